"""The local stack's webhook signing secret: generated once, kept private, shared."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devstack.signing import FILE_NAME, signing_env, signing_secret
from devstack.stack import Stack
from servicekit.webhooks import secret_key

pytestmark = pytest.mark.unit


def test_the_secret_is_generated_once_in_standard_webhooks_form_and_kept_private(
    tmp_path: Path,
) -> None:
    first = signing_secret(tmp_path / "run")
    assert first.startswith("whsec_")
    assert len(secret_key(first)) == 32
    path = tmp_path / "run" / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing_secret(tmp_path / "run") == first
    assert [p.name for p in (tmp_path / "run").iterdir()] == [FILE_NAME]


def test_two_run_folders_get_different_secrets(tmp_path: Path) -> None:
    assert signing_secret(tmp_path / "a") != signing_secret(tmp_path / "b")


def test_a_given_secret_wins_and_nothing_is_written(tmp_path: Path) -> None:
    given = {"WEBHOOK_SIGNING_SECRET": "whsec_Z2l2ZW4="}
    assert signing_env(tmp_path, given) == given
    assert not (tmp_path / FILE_NAME).exists()


def test_an_external_analysis_server_gets_no_secret_it_does_not_know(tmp_path: Path) -> None:
    assert signing_env(tmp_path, {"ANALYSIS_SERVER_URL": "http://analysis:8080"}) == {}


def test_the_services_environment_carries_the_run_folders_secret(tmp_path: Path) -> None:
    stack = Stack(run_dir=tmp_path, environ={})
    env = stack.env()
    assert env["WEBHOOK_SIGNING_SECRET"] == (tmp_path / FILE_NAME).read_text().strip()
    assert (
        Stack(run_dir=tmp_path, environ={}).env()["WEBHOOK_SIGNING_SECRET"]
        == env["WEBHOOK_SIGNING_SECRET"]
    )


def test_threads_asking_at_once_all_get_the_one_secret(tmp_path: Path) -> None:
    # `down` builds each component's environment in a thread of its own.
    from concurrent.futures import ThreadPoolExecutor

    for attempt in range(20):
        run_dir = tmp_path / str(attempt)
        with ThreadPoolExecutor(8) as pool:
            secrets = set(pool.map(signing_secret, [run_dir] * 8))
        assert secrets == {(run_dir / FILE_NAME).read_text().strip()}
        assert [p.name for p in run_dir.iterdir()] == [FILE_NAME]
