"""The gateway's tests import their fakes (``gateway_fakes``) as a top-level module."""

import sys
from pathlib import Path

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
