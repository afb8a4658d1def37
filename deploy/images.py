"""Build the five images from deploy/docker/Dockerfile: `make images`, or
`python -m deploy.images build [NAME...]`, `sizes`, `engine`.

With Docker where an engine answers, with podman otherwise. The Dockerfile keeps its
ordinary `FROM` lines; where podman cannot pull those base images, stand-ins are made
(`deploy/standins.py`) and tagged with the names the Dockerfile uses. Each image's build
arguments are read from deploy/compose.yaml, the one place that names them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from deploy import standins
from deploy.engine import Engine, ImageError, engine

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
NAMES = ("gateway", "uploader", "analyzer-bridge", "notifier", "reference-analyzer")
REPOSITORY = "audiopipe"
TAG = os.environ.get("AUDIOPIPE_TAG", "latest")
CA_SECRET_ID = "ca-certificates"


def image_name(name: str, tag: str = TAG) -> str:
    return f"{REPOSITORY}/{name}:{tag}"


def builder_name(name: str) -> str:
    """Podman only: the builder stage, kept as the next build's cache."""
    return f"{REPOSITORY}-cache/{name}:builder"


# -- what the Dockerfile and compose say ------------------------------------------------


def build_args(name: str) -> dict[str, str]:
    """The build arguments deploy/compose.yaml gives ``name``."""
    compose = yaml.safe_load(COMPOSE.read_text())
    build = compose["services"][name]["build"]
    return {key: str(value) for key, value in build["args"].items()}


def base_images(dockerfile: Path = DOCKERFILE) -> list[str]:
    """Images the Dockerfile starts from or copies from (not its own stages)."""
    text = dockerfile.read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M | re.I))
    found = re.findall(r"^FROM\s+(\S+)", text, flags=re.M | re.I)
    found += re.findall(r"--from=(\S+)", text)
    out: list[str] = []
    for image in found:
        if image not in stages and image not in out:
            out.append(image)
    return out


def ca_bundle() -> Path | None:
    """The machine's CA bundle: behind a TLS-inspecting proxy, the build's downloads need
    it. It goes into the build as a secret (mounted for one RUN), never into a layer."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


# -- building ---------------------------------------------------------------------------


def ensure_base_images(eng: Engine, log: Path) -> None:
    """Each base image present: already there, pulled, or (podman only) a stand-in."""
    for image in base_images():
        if eng.has_image(image):
            continue
        pulled = eng.run("pull", "--quiet", image, check=False, timeout=120)
        if pulled.returncode == 0:
            continue
        if not eng.is_podman:
            raise ImageError(f"cannot pull {image}: {pulled.stderr.strip()[-500:]}")
        print(f"images: {image} cannot be pulled; making a stand-in", flush=True)
        standins.make(eng, image, log)


def build(names: Sequence[str] = NAMES, *, log_dir: Path | None = None) -> dict[str, float]:
    """Build the images; seconds per image. Layers are cached by the engine."""
    eng = engine()
    log_dir = log_dir or ROOT / ".cache" / "images"
    log_dir.mkdir(parents=True, exist_ok=True)
    ensure_base_images(eng, log_dir / "standins.log")
    seconds: dict[str, float] = {}
    for name in names:
        t0 = time.monotonic()
        log = log_dir / f"{name}.log"
        _build(eng, name, log, "-t", image_name(name))
        if eng.is_podman:
            # The builder stage's last layer under a tag of its own: its layers (the
            # dependencies above all) stay the next build's cache when the prune below
            # removes what this build superseded.
            eng.run("tag", _builder_stage_id(log), builder_name(name))
        seconds[name] = time.monotonic() - t0
        print(f"images: {image_name(name)} built in {seconds[name]:.0f} s", flush=True)
    if eng.is_podman:
        # Build steps superseded by this build (a changed source makes new ones), now
        # untagged and unused: without this, every build would keep another venv.
        eng.run("image", "prune", "--force", check=False)
    return seconds


def _builder_stage_id(log: Path) -> str:
    """The image of the first stage's last step, from the build's output (`--> ID`)."""
    last = None
    for line in log.read_text().splitlines():
        if line.startswith("[2/"):
            break
        if line.startswith("--> ") and "Using cache" not in line:
            last = line.removeprefix("--> ").strip()
    if last is None:
        raise ImageError(f"no builder stage in {log}")
    return last


def _build(eng: Engine, name: str, log: Path, *options: str) -> None:
    args = ["build", "-f", str(DOCKERFILE), *options]
    for key, value in build_args(name).items():
        args += ["--build-arg", f"{key}={value}"]
    bundle = ca_bundle()
    if bundle is not None:
        args += ["--secret", f"id={CA_SECRET_ID},src={bundle}"]
    if eng.is_podman:
        # Docker's image format keeps the HEALTHCHECK; stand-ins are local only.
        args += ["--format", "docker", "--pull=never", "--layers"]
    with log.open("w") as out:
        result = subprocess.run(
            [eng.command, *args, str(ROOT)],
            env={**os.environ, **eng.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if result.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise ImageError(f"building {name} failed (log: {log}):\n{tail}")


def sizes(names: Sequence[str] = NAMES) -> dict[str, int]:
    """Bytes of each image, as the engine counts them."""
    eng = engine()
    out: dict[str, int] = {}
    for name in names:
        result = eng.run("image", "inspect", "--format", "{{.Size}}", image_name(name), check=False)
        if result.returncode == 0:
            out[name] = int(result.stdout.strip())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.images", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build the images (all five by default)")
    build_cmd.add_argument("names", nargs="*", metavar="NAME", help=", ".join(NAMES))
    build_cmd.add_argument(
        "--unless-no-engine",
        action="store_true",
        help="without Docker or podman, say so and succeed (the container tests skip)",
    )
    sub.add_parser("sizes", help="print each image's size")
    sub.add_parser("engine", help="print the engine and the environment it needs")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            unknown = set(args.names) - set(NAMES)
            if unknown:
                parser.error(f"unknown image(s): {', '.join(sorted(unknown))}")
            t0 = time.monotonic()
            if args.unless_no_engine:
                try:
                    engine()
                except ImageError as exc:
                    print(f"images: not built: {exc}")
                    return 0
            build(args.names or NAMES)
            print(f"images: built in {time.monotonic() - t0:.0f} s")
            args.command = "sizes"
        if args.command == "sizes":
            for name, size in sizes().items():
                print(f"{image_name(name):40} {size / 1e6:7.0f} MB")
        elif args.command == "engine":
            eng = engine()
            print(eng.command, *(f"{k}={v}" for k, v in eng.env.items()))
    except ImageError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
