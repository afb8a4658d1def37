"""What every HTTP service shares: one JSON error shape, health and readiness routes.

Every error answer, whatever raised it, has the body
``{"error": {"code": "<stable_code>", "message": "<for humans>"}}``.
"""

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.metrics import HttpMetrics, registry
from servicekit.telemetry import redact_server_span

__all__ = [
    "ApiError",
    "DependencyUnavailable",
    "ErrorBody",
    "NotReady",
    "ReadinessCheck",
    "allow_origins",
    "client_address",
    "create_app",
    "describe_errors",
    "error_body",
    "error_response",
    "install_error_handlers",
    "unavailable_response",
]

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]


def client_address(scope: Mapping[str, Any]) -> str:
    """Whom a request counts against when no account says (fair use, docs/architecture.md
    §6): its client's address, which uvicorn has set from a trusted proxy's
    ``X-Forwarded-For`` (``TRUSTED_PROXIES``) or else to the peer's own. An IPv6 client
    counts by its /64, the network one subscriber is usually given whole; an IPv4 address
    mapped into IPv6 as IPv4. Empty when the server knows no peer."""
    client = scope.get("client")
    if not client:
        return ""
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class ApiError(Exception):
    """An error answer: raise it anywhere in a request to send the JSON error shape."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


class DependencyUnavailable(ApiError):
    """A system this work needs (PostgreSQL, Kafka, S3, ...) does not answer right now.

    Adapters raise it for an outage, never for a bug. Over HTTP it is a 503 in the one
    error shape with ``Retry-After`` (the handler :func:`create_app` installs), so a
    client retries instead of reading a 500; a Kafka handler lets it propagate, so the
    message is not committed and comes again once the dependency is back. ``detail``
    is for the log, not for clients.
    """

    def __init__(self, dependency: str, retry_after: int = 5, detail: str = "") -> None:
        super().__init__(
            503,
            "unavailable",
            f"{dependency} is unavailable; retry later",
            {"Retry-After": str(retry_after)},
        )
        self.dependency = dependency
        self.retry_after = retry_after
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.dependency} is unavailable" + (f": {self.detail}" if self.detail else "")


class NotReady(Exception):
    """What a readiness check raises to say why the service is not ready: ``/readyz``
    answers 503 with its message (e.g. ``waiting for PostgreSQL: connection refused
    (attempt 4, next in 8 s)``) instead of naming the check."""


class ErrorBody(BaseModel):
    """The one error shape, as a model for the OpenAPI documents' error answers."""

    class Error(BaseModel):
        code: str
        message: str

    error: Error


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message), status_code=error.status_code, headers=error.headers
    )


def unavailable_response(exc: DependencyUnavailable) -> JSONResponse:
    """The 503 of an outage: which dependency, not its internals (those go to the log)."""
    return error_response(exc)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _dependency_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DependencyUnavailable)
    # An outage is expected operation, not a bug: one line, no traceback.
    log.warning("%s %s answered 503: %s", request.method, request.url.path, exc)
    return unavailable_response(exc)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def describe_errors(
    errors: Sequence[Mapping[str, Any]], *, prefix: str = "", limit: int | None = None
) -> str:
    """One line naming each validation problem (pydantic's ``errors()``) by where it
    is, e.g. ``body.size: Input should be greater than 0``; at most ``limit`` of them,
    then how many more, since a message may travel in a job's error."""
    shown = errors if limit is None else errors[:limit]

    def where(loc: Sequence[int | str]) -> str:
        return ".".join(str(p) for p in (prefix, *loc) if p != "") or "body"

    named = "; ".join(f"{where(e['loc'])}: {e['msg']}" for e in shown)
    more = len(errors) - len(shown)
    return f"{named} (and {more} more)" if more > 0 else named


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        error_body("invalid_request", describe_errors(exc.errors())), status_code=422
    )


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal", "internal error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape: :class:`ApiError` (and
    :class:`DependencyUnavailable`, a 503 with ``Retry-After``), Starlette's HTTP errors,
    request validation (422 ``invalid_request``, naming each problem) and, as a 500,
    anything unexpected. :func:`create_app` installs them; an app built otherwise (the
    reference analysis server) calls this."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DependencyUnavailable, _dependency_unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


def allow_origins(
    app: FastAPI,
    origins: Sequence[str],
    *,
    methods: Sequence[str],
    headers: Sequence[str] = ("Authorization",),
    expose: Sequence[str] = (),
) -> None:
    """Let pages from exactly ``origins`` call ``app`` from a browser, cookies included.

    CORS origins are configuration, never ``*`` (docs/architecture.md §6): with credentials allowed,
    Starlette would echo any origin back for ``*``, which would hand every site the job
    cookie. No origins means same-origin only (no CORS headers at all).
    """
    if not origins:
        return
    if "*" in origins:
        raise ValueError("CORS origins must be listed one by one, not `*`")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_credentials=True,
        allow_methods=list(methods),
        allow_headers=list(headers),
        expose_headers=list(expose),
        max_age=600,
    )


async def _probe(checks: Sequence[ReadinessCheck], code: str, ok: dict[str, str]) -> JSONResponse:
    """200 with ``ok`` when every check passes, else 503 naming the first that fails."""
    for check in checks:
        reason = f"{check.__name__} is not ready"
        try:
            passed = await check()
        except NotReady as exc:
            reason, passed = str(exc), False
        except DependencyUnavailable as exc:
            log.warning("check %s: %s", check.__name__, exc)
            passed = False
        except Exception:
            log.warning("check %s raised", check.__name__, exc_info=True)
            passed = False
        if not passed:
            return JSONResponse(
                error_body(code, reason), status_code=503, headers={"Retry-After": "5"}
            )
    return JSONResponse(ok)


def create_app(
    *,
    title: str,
    description: str,
    service: str | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    readiness: Sequence[ReadinessCheck] = (),
    liveness: Sequence[ReadinessCheck] = (),
) -> FastAPI:
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.add_middleware(HttpMetrics, service=service or title)
    # One span per request, not one per body piece received or sent: an upload of 1 GiB
    # arrives in ~16,000 pieces and an SSE stream sends for hours.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="healthz,readyz,metrics,analysis-progress",
        exclude_spans=["receive", "send"],
        server_request_hook=redact_server_span,
    )
    install_error_handlers(app)
    app.state.readiness = list(readiness)
    app.state.liveness = list(liveness)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> JSONResponse:
        """Liveness: the process answers and nothing it runs has died (a 503 here is
        for the orchestrator to restart it)."""
        return await _probe(request.app.state.liveness, "not_alive", {"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: every dependency this service needs answers."""
        return await _probe(request.app.state.readiness, "not_ready", {"status": "ready"})

    return app
