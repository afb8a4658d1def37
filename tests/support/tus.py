"""tus clients from the npm registry, installed once into tests/clients: tus-js-client
(for Node and a page) and Uppy (``@uppy/core`` + ``@uppy/tus``, bundled for a page)."""

import shutil
import subprocess
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


def _installed(name: str, package: str) -> Path:
    """``tests/clients/<name>`` with its locked packages installed; skips without npm."""
    folder = CLIENTS / name
    if not (folder / "node_modules" / package).exists():
        if not shutil.which("npm"):
            pytest.skip(f"npm is needed to install {package}")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, check=True, capture_output=True
        )
    return folder


def tus_client_dir() -> Path:
    """The folder with ``node_modules/tus-js-client``."""
    return _installed("tus", "tus-js-client")


def uppy_bundle() -> Path:
    """One script that sets ``window.Uppy`` and ``window.UppyTus`` (esbuild, from npm)."""
    folder = _installed("uppy", "@uppy/tus")
    bundle = folder / "dist" / "uppy-tus.js"
    if not bundle.exists():
        subprocess.run(["npm", "run", "bundle"], cwd=folder, check=True, capture_output=True)
    return bundle


FINAL_STATUS = """async (url) => {
  for (let i = 0; i < 1000; i += 1) {
    const s = await (await fetch(url)).json();
    if (s.status === "completed" || s.status === "failed") return s.status;
    await new Promise((r) => setTimeout(r, 300));
  }
  return "still running";
}"""
"""For ``page.evaluate`` with a job's status URL: its final status, as the page sees it."""
