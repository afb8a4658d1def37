"""The container engine that builds and runs the images: Docker where an engine answers,
else podman, with a containers.conf of the project's own (deploy/README.md)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PODMAN_TOOLS = ("podman", "buildah", "runc")
INSTALL_HINT = (
    "as root: apt-get install podman buildah runc catatonit iptables debootstrap slirp4netns "
    "netavark aardvark-dns uidmap (`make containers` does it)"
)


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Engine:
    """`docker` or `podman`, with the environment its commands need."""

    command: str
    env: Mapping[str, str]

    @property
    def is_podman(self) -> bool:
        return Path(self.command).name == "podman"

    def run(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.command, *args],
            env={**os.environ, **self.env},
            capture_output=capture,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ImageError(
                f"{self.command} {' '.join(args[:3])} ... failed ({result.returncode}):\n"
                f"{(result.stderr or '').strip()[-3000:]}"
            )
        return result

    def has_image(self, reference: str) -> bool:
        return self.run("image", "inspect", reference, check=False).returncode == 0

    def image_id(self, reference: str) -> str | None:
        result = self.run("image", "inspect", "--format", "{{.Id}}", reference, check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None


def _docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def containers_conf(path: Path | None = None) -> Path:
    """A containers.conf of the project's own (named by `CONTAINERS_CONF`), so that the
    machine's is left alone: runc as the runtime (crun 1.8 refuses some cgroup layouts),
    and default ulimits that fit this machine. Podman asks for nofile 1048576 and nproc
    4194304 in a root container; a process may not raise its hard limit, and where root
    cannot either (sandboxes, CI) the container fails to start. nproc is also kept at
    `kernel.pid_max`, above which runc's setrlimit fails here."""
    path = path or ROOT / ".cache" / "podman" / "containers.conf"
    nofile = _fit(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1048576)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = _fit(resource.getrlimit(resource.RLIMIT_NPROC)[1], pid_max)
    text = (
        "# Written by deploy/images.py from this machine's limits; do not edit.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _fit(hard: int, most: int) -> int:
    return most if hard == resource.RLIM_INFINITY else min(hard, most)


def engine(prefer: str | None = None) -> Engine:
    """Docker where an engine answers (or `AUDIOPIPE_CONTAINER_ENGINE=docker`), else podman."""
    choice = prefer or os.environ.get("AUDIOPIPE_CONTAINER_ENGINE", "auto")
    if choice in ("auto", "docker") and _docker_engine_answers():
        return Engine(shutil.which("docker") or "docker", {})
    if choice == "docker":
        raise ImageError("AUDIOPIPE_CONTAINER_ENGINE=docker, but no Docker engine answers")
    missing = [tool for tool in PODMAN_TOOLS if shutil.which(tool) is None]
    if missing:
        raise ImageError(
            f"no Docker engine answers and {', '.join(missing)} missing: {INSTALL_HINT}"
        )
    return Engine(shutil.which("podman") or "podman", {"CONTAINERS_CONF": str(containers_conf())})
