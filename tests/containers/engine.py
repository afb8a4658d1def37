"""The five images run as containers (podman, or Docker where an engine answers), with
the settings the manifests give them; see ``tests/containers/conftest.py`` for the
network they share."""

import os
import secrets
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.engine import Engine
from deploy.images import image_name
from tests.containers.manifests import ContainerSettings

LABEL = "io.audiopipe.tests"


def random_secret() -> str:
    """32 random bytes, URL-safe: what an operator puts in the Secret."""
    return secrets.token_urlsafe(32)


def random_signing_secret() -> str:
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Containers:
    """Containers of one test session, named ``<prefix>-<service>``."""

    engine: Engine
    prefix: str
    env_dir: Path
    started: list[str] = field(default_factory=list)

    def name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.engine.run(*args, check=check, timeout=timeout)

    def run(
        self,
        settings: ContainerSettings,
        env: Mapping[str, str],
        *,
        network: Sequence[str] = ("--network", "host"),
    ) -> None:
        """Start ``settings.name`` detached: its manifest's user, read-only root with an
        emptyDir-like /tmp, capabilities dropped, no privilege escalation, its memory and
        CPU limits, and ``env`` from a file only root can read (not on a command line)."""
        env_file = self.env_dir / f"{settings.name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        env_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
        tmpfs = "/tmp:rw,mode=1777" + (f",size={settings.tmp_size}" if settings.tmp_size else "")
        args = [
            "run",
            "--detach",
            "--name",
            self.name(settings.name),
            "--label",
            f"{LABEL}={self.prefix}",
            *network,
            "--user",
            f"{settings.user}:{settings.group}",
            "--tmpfs",
            tmpfs,
            *(f"--cap-drop={cap}" for cap in settings.drop),
            "--memory",
            settings.memory,
            "--cpus",
            settings.cpus,
            "--stop-timeout",
            str(settings.termination_grace_seconds),
            "--env-file",
            str(env_file),
        ]
        if settings.read_only:
            args.append("--read-only")
            if self.engine.is_podman:
                # podman would add tmpfs on /run and /var/tmp too; a pod gets only its
                # declared volumes.
                args.append("--read-only-tmpfs=false")
        if settings.no_privilege_escalation:
            args += ["--security-opt", "no-new-privileges"]
        self.cli(*args, image_name(settings.name))
        self.started.append(settings.name)

    def state(self, service: str) -> dict[str, str]:
        fmt = "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}"
        out = self.cli("inspect", "--format", fmt, self.name(service)).stdout.split()
        return {"status": out[0], "exit_code": out[1], "pid": out[2]}

    def logs(self, service: str) -> str:
        result = self.cli("logs", self.name(service), check=False)
        return result.stdout + result.stderr

    def exec(self, service: str, *command: str) -> subprocess.CompletedProcess[str]:
        return self.cli("exec", self.name(service), *command, check=False)

    def kill(self, service: str) -> None:
        self.cli("kill", "--signal", "KILL", self.name(service))
        self.wait_exited(service)

    def stop(self, service: str) -> None:
        """SIGTERM, then SIGKILL after the manifest's grace period (``--stop-timeout``)."""
        self.cli("stop", self.name(service), timeout=180)

    def start(self, service: str) -> None:
        self.cli("start", self.name(service))

    def wait_exited(self, service: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while self.state(service)["status"] not in ("exited", "stopped"):
            assert time.monotonic() < deadline, f"{service} did not exit"
            time.sleep(0.1)

    def remove_all(self) -> None:
        for service in self.started:
            self.cli("rm", "--force", "--time", "0", self.name(service), check=False)
        self.started.clear()

    def process_status(self, service: str) -> dict[str, str]:
        """/proc/<pid>/status of the container's main process, as the host sees it."""
        pid = self.state(service)["pid"]
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def session_prefix() -> str:
    return f"audiopipe-test-{os.getpid()}"
