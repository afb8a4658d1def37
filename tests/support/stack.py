"""The whole stack through the edge, for the packages that drive it (e2e, browser)."""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from devstack import Stack, StackInfo

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_stack(
    infra: Mapping[str, str], app_env: Mapping[str, str] | None = None
) -> Iterator[StackInfo]:
    """Edge, four services and reference analyzer on the given infrastructure; stops
    again only what it started.

    ``app_env`` is added to the services' environment (e.g. ``CORS_ALLOWED_ORIGINS``).
    Services already running from this run dir are reused as they are: ``info.reused``
    says which, so a test that needs its own settings can tell."""
    # As the e2e fixture always did: later code in the session finds the same
    # infrastructure in the environment.
    os.environ.update(infra)
    stack = Stack(root=ROOT, environ={**os.environ, **(app_env or {})})
    info = stack.up(apps=True)
    try:
        yield info
    finally:
        stack.down(only=info)
