"""The one way a service process starts: logs configured, then uvicorn."""

import uvicorn
from fastapi import FastAPI

from servicekit import logs
from servicekit.settings import ServiceSettings
from servicekit.telemetry import configure_tracing


def serve(app: FastAPI, settings: ServiceSettings, service: str) -> None:
    logs.configure(service, settings.log_level)
    configure_tracing(service)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
