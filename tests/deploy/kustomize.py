"""Rendering deploy/k8s with kustomize, and reading the edge's routes and headers from
deploy/local/Caddyfile, for the tests that hold the two to each other."""

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CADDYFILE = ROOT / "deploy" / "local" / "Caddyfile"
# Which service an upstream variable of the Caddyfile names.
UPSTREAMS = {
    "GATEWAY_ADDR": "gateway",
    "NOTIFIER_ADDR": "notifier",
    "ANALYZER_BRIDGE_ADDR": "analyzer-bridge",
}


def kustomize_command() -> list[str] | None:
    """kubectl's kustomize where it reads these kustomizations (kubectl ≥ 1.21), else the
    kustomize that `make containers` builds into .cache/bin; None without either."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        probe = subprocess.run(
            [kubectl, "kustomize", str(K8S / "base")], capture_output=True, timeout=60, check=False
        )
        if probe.returncode == 0:
            return [kubectl, "kustomize"]
    built = ROOT / ".cache" / "bin" / "kustomize"
    if built.is_file():
        return [str(built), "build"]
    return None


def render(
    command: list[str], tmp: Path, overlay: bool, secrets: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The base, or the example overlay with its secrets.env made from ``secrets`` or
    else the example (in a copy: a real secrets.env of the checkout is never read)."""
    copy = tmp / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    folder = copy / "overlays" / "example" if overlay else copy / "base"
    if overlay:
        example = (folder / "secrets.env.example").read_text()
        given = "".join(f"{k}={v}\n" for k, v in (secrets or {}).items())
        (folder / "secrets.env").write_text(given or example)
    result = subprocess.run(
        [*command, str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@dataclass
class EdgeRoute:
    """One `handle` of the Caddyfile that proxies to a service."""

    service: str
    patterns: list[str]
    """Regexes (path_regexp) or Caddy path matchers (`/jobs/*`)."""
    regex: bool
    flushes: bool
    """`flush_interval -1`: every write is sent at once (Server-Sent Events)."""
    options: list[str] = field(default_factory=list)


def _site_lines() -> list[str]:
    return [
        line.strip()
        for line in CADDYFILE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def edge_routes() -> list[EdgeRoute]:
    """The Caddyfile's proxied routes: named matchers, the handles that use them, their
    upstream (by variable) and their options."""
    lines = _site_lines()
    matchers: dict[str, tuple[list[str], bool]] = {}
    for line in lines:
        if line.startswith("@"):
            name, kind, *rest = shlex.split(line)
            if kind == "path_regexp":
                matchers[name] = (rest[-1].split("|"), True)
            elif kind == "path":
                matchers[name] = (rest, False)
    routes: list[EdgeRoute] = []
    for i, line in enumerate(lines):
        if not line.startswith("handle") or not line.endswith("{"):
            continue
        target = line.removeprefix("handle").removesuffix("{").strip()
        patterns, regex = matchers.get(target, ([target], False))
        depth, body = 1, []
        for inner in lines[i + 1 :]:
            depth += inner.count("{") - inner.count("}")
            if depth <= 0:
                break
            body.append(inner)
        proxy = next((b for b in body if b.startswith("reverse_proxy")), None)
        if proxy is None:
            continue  # the demo page's files, served by the edge itself
        variable = proxy.split("{$", 1)[1].split(":", 1)[0].split("}", 1)[0]
        routes.append(
            EdgeRoute(
                service=UPSTREAMS[variable],
                patterns=[p.strip("^$") for p in patterns],
                regex=regex,
                flushes="flush_interval -1" in body,
                options=body,
            )
        )
    return routes


def edge_headers() -> tuple[dict[str, str], set[str]]:
    """The headers the edge sets on every answer (its site-wide `header` block) and the
    ones it deletes (`header -Name`), not the demo page's own."""
    lines = CADDYFILE.read_text().splitlines()
    set_: dict[str, str] = {}
    removed: set[str] = set()
    depth = 0
    inside = False
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if depth == 1 and line == "header {":
            inside = True
        elif inside and line == "}":
            inside = False
        elif inside:
            name, value = shlex.split(line)
            set_[name] = value
        elif depth == 1 and line.startswith("header -"):
            removed.add(line.removeprefix("header -"))
        depth += line.count("{") - line.count("}")
    return set_, removed


def snippet_headers(snippet: str) -> tuple[dict[str, str], set[str]]:
    """What an ingress-nginx configuration snippet sets and clears (headers-more)."""
    set_: dict[str, str] = {}
    removed: set[str] = set()
    for line in snippet.splitlines():
        line = line.strip().removesuffix(";")
        if line.startswith("more_set_headers "):
            (header,) = shlex.split(line.removeprefix("more_set_headers "))
            name, _, value = header.partition(":")
            set_[name.strip()] = value.strip()
        elif line.startswith("more_clear_headers "):
            removed.update(shlex.split(line.removeprefix("more_clear_headers ")))
        elif line:
            raise AssertionError(f"unexpected snippet line {line!r}")
    return set_, removed
