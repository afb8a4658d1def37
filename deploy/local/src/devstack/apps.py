"""The project's own services, each run as `python -m <module>`."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from devstack.component import Component, Context, NotReady
from devstack.config import AppSpec


class App(Component):
    def __init__(self, ctx: Context, spec: AppSpec) -> None:
        super().__init__(ctx)
        self.spec = spec
        self.name = spec.name

    @property
    def port(self) -> int:
        return self.spec.port

    def process_env(self) -> dict[str, str]:
        env = dict(self.ctx.environ)
        env.update(self.ctx.env)
        env["HTTP_PORT"] = str(self.spec.port)
        return env

    def cwd(self) -> Path | None:
        return self.ctx.root

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.spec.module]

    def probe(self, timeout: float) -> None:
        url = f"{self.spec.url}/readyz"
        try:
            response = httpx.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            raise NotReady(f"GET {url} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise NotReady(f"GET {url} answered {response.status_code}: {response.text[:200]}")
