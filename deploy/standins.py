"""Stand-ins for the Dockerfile's base images, for a machine that cannot pull them.

Made from Debian's packages (debootstrap) and the uv wheel from PyPI, imported into
podman and tagged with the exact names the Dockerfile uses, so that the Dockerfile keeps
its ordinary `FROM` lines:

- `python:X.Y-slim-SUITE`: a minimal Debian SUITE with Debian's pythonX.Y, CA
  certificates, netbase and tzdata, as the official slim image has (without its pip);
  Debian's apt lists, documentation and translations removed, as there.
- `ghcr.io/astral-sh/uv:VERSION`: `/uv` and `/uvx` of that uv release, as the official
  image has them (the glibc build, not the static musl one: it runs in the builder).

Each carries the label `io.audiopipe.stand-in`, so that `podman images --filter
label=io.audiopipe.stand-in` tells them from real ones. Needs root (debootstrap).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from deploy.engine import Engine

LABEL = "io.audiopipe.stand-in"
PYTHON = re.compile(r"^(?:docker\.io/(?:library/)?)?python:(\d+\.\d+)-slim-([a-z]+)$")
UV = re.compile(r"^ghcr\.io/astral-sh/uv:(\d+\.\d+\.\d+)$")
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the official slim image leaves out too.
PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)


class StandInError(RuntimeError):
    pass


def make(engine: Engine, image: str, log: Path) -> None:
    """Make the stand-in for ``image`` and tag it with that name."""
    if (match := PYTHON.match(image)) is not None:
        _python(engine, image, match.group(1), match.group(2), log)
    elif (match := UV.match(image)) is not None:
        _uv(engine, image, match.group(1), log)
    else:
        raise StandInError(f"no stand-in is known for {image}")


def _run(
    args: list[str],
    log: Path,
    *,
    stdin: IO[bytes] | int | None = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=stdin, env=env, check=False
        )
    if result.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise StandInError(f"{args[0]} failed ({result.returncode}; log: {log}):\n{tail}")


def _import(engine: Engine, folder: Path, image: str, changes: list[str], log: Path) -> None:
    """`podman import` of the folder as one layer, with Dockerfile-like ``changes``."""
    args = [engine.command, "import"]
    for change in [*changes, f"LABEL {LABEL}={image}"]:
        args += ["--change", change]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(folder), "-c", "."],
        stdout=subprocess.PIPE,
    )
    try:
        _run([*args, "-", image], log, stdin=tar.stdout, env={**os.environ, **engine.env})
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()


def _python(engine: Engine, image: str, version: str, suite: str, log: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise StandInError("debootstrap is missing: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="audiopipe-standin-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        packages = f"python{version},ca-certificates,netbase,tzdata"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={packages}",
                suite,
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            log,
        )
        if not (rootfs / "usr" / "bin" / f"python{version}").is_file():
            raise StandInError(f"Debian {suite} has no python{version}")
        for path in PRUNE:
            for child in (rootfs / path).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        # The official image's names for the interpreter.
        for name in ("python3", "python"):
            link = rootfs / "usr" / "local" / "bin" / name
            link.unlink(missing_ok=True)
            link.symlink_to(f"/usr/bin/python{version}")
        _import(
            engine,
            rootfs,
            image,
            [f"ENV PATH={PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]'],
            log,
        )


def _uv(engine: Engine, image: str, version: str, log: Path) -> None:
    # `uv run` names itself in UV.
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise StandInError("uv is missing (`make setup` installs it)")
    with tempfile.TemporaryDirectory(prefix="audiopipe-standin-") as tmp:
        target = Path(tmp) / "wheel"
        _run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(target),
                "--python-platform",
                f"{platform.machine()}-manylinux_2_17",
                "--python-version",
                "3.11",
                f"uv=={version}",
            ],
            log,
        )
        root = Path(tmp) / "root"
        root.mkdir()
        for name in ("uv", "uvx"):
            shutil.copy2(target / "bin" / name, root / name)
            (root / name).chmod(0o755)
        _import(engine, root, image, ['ENTRYPOINT ["/uv"]'], log)
