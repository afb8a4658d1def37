"""Write the interface documents into ``docs/``: ``python -m docs.generate`` (``make docs``).

- ``docs/asyncapi/<service>.yaml``: the AsyncAPI 3.0 document FastStream generates from
  each service's broker (its subscribers and declared publishers);
- ``docs/openapi/<service>.json``: the OpenAPI document of each service with public
  HTTP routes (the uploader has none beyond its probes).

Other teams subscribe from these alone (docs/architecture.md §4), so they are checked in, and
``--check`` (run by ``tests/docs``) fails when one is out of date. Settings come from
the defaults only, never the environment, so the output is the same on every machine.
"""

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from faststream.specification import AsyncAPI

from servicekit.service import service_of

DOCS = Path(__file__).resolve().parent
KAFKA = "kafka:9092"
"""The broker address the documents name (the compose file's)."""
VERSION = "0.1.0"


@dataclass(frozen=True)
class Service:
    name: str
    build: Callable[[], FastAPI]
    asyncapi: bool = True
    openapi: bool = True


def _gateway() -> FastAPI:
    from gateway.app import create_app
    from gateway.settings import Settings

    return create_app(Settings.model_validate({"kafka_bootstrap_servers": KAFKA}))


def _uploader() -> FastAPI:
    from uploader.app import create_app
    from uploader.settings import Settings

    return create_app(Settings.model_validate({"kafka_bootstrap_servers": KAFKA}))


def _analyzer_bridge() -> FastAPI:
    from analyzer_bridge.app import create_app
    from analyzer_bridge.settings import Settings

    return create_app(Settings.model_validate({"kafka_bootstrap_servers": KAFKA}))


def _notifier() -> FastAPI:
    from notifier.app import create_app
    from notifier.settings import Settings

    return create_app(Settings.model_validate({"kafka_bootstrap_servers": KAFKA}))


def _reference_analyzer() -> FastAPI:
    from reference_analyzer.app import create_app
    from reference_analyzer.settings import Settings

    return create_app(Settings.model_validate({}))


# ``model_validate`` skips pydantic-settings' environment sources: defaults only.
SERVICES = (
    Service("gateway", _gateway),
    Service("uploader", _uploader, openapi=False),
    Service("analyzer-bridge", _analyzer_bridge),
    Service("notifier", _notifier),
    Service("reference-analyzer", _reference_analyzer, asyncapi=False),
)


def asyncapi_yaml(app: FastAPI, service: str) -> str:
    broker = service_of(app).broker
    spec = AsyncAPI(
        broker, title=f"audiopipe {service}", version=VERSION, description=app.description
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    return yaml.safe_dump(_in_stable_order(document), sort_keys=False, allow_unicode=True)


def _in_stable_order(document: dict[str, Any]) -> dict[str, Any]:
    """FastStream collects publishers in a set, so the order of channels (and what
    refers to them) changes with the hash seed; sort those maps by name."""
    first = ("asyncapi", "info", "defaultContentType", "servers")
    ordered = {key: document[key] for key in first if key in document}
    for key, value in document.items():
        if key in ordered:
            continue
        if key in ("channels", "operations"):
            value = dict(sorted(value.items()))
        elif key == "components":
            value = {part: dict(sorted(items.items())) for part, items in value.items()}
        ordered[key] = value
    return ordered


def openapi_json(app: FastAPI) -> str:
    document: dict[str, Any] = app.openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def documents() -> dict[Path, str]:
    """Every generated document, by its path under ``docs/``."""
    out: dict[Path, str] = {}
    for service in SERVICES:
        app = service.build()
        if service.asyncapi:
            out[Path("asyncapi", f"{service.name}.yaml")] = asyncapi_yaml(app, service.name)
        if service.openapi:
            out[Path("openapi", f"{service.name}.json")] = openapi_json(app)
    return out


def stale(root: Path = DOCS) -> list[Path]:
    """The documents whose checked-in text differs from what the code generates."""
    wanted = documents()
    return sorted(
        path
        for path, text in wanted.items()
        if not (root / path).is_file() or (root / path).read_text() != text
    )


def write(root: Path = DOCS) -> list[Path]:
    written = []
    for path, text in documents().items():
        target = root / path
        if not target.is_file() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale documents")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"docs/{path} is out of date; run `make docs`", file=sys.stderr)
        return 1 if out_of_date else 0
    for path in write():
        print(f"wrote docs/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
