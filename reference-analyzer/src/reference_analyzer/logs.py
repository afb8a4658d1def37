"""Logging: every line of a job names the job; URLs are logged by host only.

``audio_url`` is a presigned URL and ``webhook_url`` a capability URL: both are
credentials, so neither is ever logged in full.
"""

import logging
from collections.abc import MutableMapping
from typing import Any

import httpx

logger = logging.getLogger("reference_analyzer")


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes messages with the job id and adds it as ``job_id`` to the record."""

    def __init__(self, job_id: str) -> None:
        super().__init__(logger, {"job_id": job_id})
        self.job_id = job_id

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs.setdefault("extra", {})["job_id"] = self.job_id
        return f"job_id={self.job_id} {msg}", kwargs


def url_host(url: str) -> str:
    """The host of a URL, the only part of it that may be logged."""
    try:
        return httpx.URL(url).host or "?"
    except httpx.InvalidURL:
        return "?"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request's full URL at INFO; ours carry credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
