"""The app factory: wires settings, the outgoing HTTP client, the analyzer and the
routes together; the only place where dependencies are built."""

import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

import reference_analyzer
from reference_analyzer import routes
from reference_analyzer.admission import RequestGuard
from reference_analyzer.download import Downloader
from reference_analyzer.jobs import JobRegistry
from reference_analyzer.routes import Services
from reference_analyzer.settings import Settings
from reference_analyzer.webhooks import WebhookSender
from reference_analyzer.worker import Analyzer
from servicekit.http import install_error_handlers

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, client: httpx.AsyncClient | None = None
) -> FastAPI:
    """The app; ``client`` (e.g. with a ``MockTransport``) replaces the outgoing HTTP
    client, which the app then does not close."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = client or httpx.AsyncClient(
            headers={"user-agent": "reference-analyzer"},
            # A download and a webhook per analysis under way are all it reuses; httpx's
            # pool checks every idle connection before each request and after each
            # answer, and its 20 cost this server 4% of its CPU (issue 21).
            limits=httpx.Limits(max_keepalive_connections=2 * settings.max_concurrent_jobs),
        )
        retry = {
            "backoff_seconds": settings.retry_backoff_seconds,
            "max_delay_seconds": settings.retry_max_delay_seconds,
        }
        registry = JobRegistry()
        analyzer = Analyzer(
            downloader=Downloader(
                http,
                attempts=settings.download_attempts,
                timeout_seconds=settings.download_timeout_seconds,
                chunk_bytes=settings.download_chunk_bytes,
                **retry,
            ),
            sender=WebhookSender(
                http,
                secret=settings.signing_secret,
                attempts=settings.webhook_attempts,
                timeout_seconds=settings.webhook_timeout_seconds,
                **retry,
            ),
            registry=registry,
            max_concurrent=settings.max_concurrent_jobs,
            block_frames=settings.block_frames,
            temp_dir=settings.temp_dir,
            max_duration_seconds=settings.max_duration_seconds,
            max_analysis_seconds=settings.max_analysis_seconds,
            progress_interval_seconds=settings.progress_interval_seconds,
        )
        guard = RequestGuard(
            settings.signing_secret,
            settings.signature_tolerance_seconds,
            max_body_bytes=settings.max_request_bytes,
        )
        if not guard.required:
            log.warning(
                "no WEBHOOK_SIGNING_SECRET: POST /analyze is open to anyone who reaches "
                "this server, and webhooks go unsigned (development only)"
            )
        services = Services(
            settings=settings, analyzer=analyzer, registry=registry, guard=guard, ready=True
        )
        app.state.services = services
        try:
            yield
        finally:
            services.ready = False
            await analyzer.aclose()
            if client is None:
                await http.aclose()

    app = FastAPI(
        title="Reference analysis server",
        description=routes.__doc__ or "",
        version=reference_analyzer.__version__,
        lifespan=lifespan,
    )
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,readyz", exclude_spans=["receive", "send"]
    )
    app.include_router(routes.router)
    install_error_handlers(app)
    return app
