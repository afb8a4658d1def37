"""The local stack's webhook signing secret (issue 11): signed webhooks by default.

The analyzer-bridge verifies and the reference analysis server signs Standard Webhooks
signatures with ``WEBHOOK_SIGNING_SECRET``. `up` generates one the first time and keeps
it in the run folder (mode 0600), so restarts and every service agree on it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

ENV = "WEBHOOK_SIGNING_SECRET"
FILE_NAME = "webhook-signing-secret"
ANALYSIS_SERVER_ENV = "ANALYSIS_SERVER_URL"


def signing_env(run_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``WEBHOOK_SIGNING_SECRET`` for the services: the one given, else the run folder's.

    With an external analysis server (``ANALYSIS_SERVER_URL`` set) and no secret given,
    none: the bridge cannot impose a secret on a server that does not know it."""
    given = environ.get(ENV, "").strip()
    if given:
        return {ENV: given}
    if environ.get(ANALYSIS_SERVER_ENV, "").strip():
        return {}
    return {ENV: signing_secret(run_dir)}


def signing_secret(run_dir: Path) -> str:
    """The secret kept in ``run_dir``, created (`whsec_` + 32 random bytes in base64, as
    Standard Webhooks serializes keys) when there is none yet."""
    path = run_dir / FILE_NAME
    if path.exists():
        return path.read_text().strip()
    run_dir.mkdir(parents=True, exist_ok=True)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    # A draft of its own per call: `down` asks for the environment from several threads.
    draft = run_dir / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    try:
        # A link fails if the name exists: of two `up`s at once, the first one wins and
        # the other reads its secret, complete (never a half-written file).
        os.link(draft, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        with contextlib.suppress(FileNotFoundError):
            draft.unlink()
    return secret
