"""tus-js-client from the npm registry, installed once into tests/clients/tus."""

import shutil
import subprocess
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[1] / "clients" / "tus"


def tus_client_dir() -> Path:
    """The folder with ``node_modules/tus-js-client``; skips without node and npm."""
    if not (CLIENT / "node_modules" / "tus-js-client").exists():
        if not shutil.which("npm"):
            pytest.skip("npm is needed to install tus-js-client")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENT, check=True, capture_output=True
        )
    return CLIENT
