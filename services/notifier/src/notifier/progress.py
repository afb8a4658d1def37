"""The SSE progress route, ``GET /tokens/analysis-progress/{job_id}``, as a plain ASGI
callable that answers before FastAPI's middleware stack and routing (issue 14).

An open stream lives for minutes and a notifier holds tens of thousands of them, so
whatever a request keeps while it streams is paid per stream. Through FastAPI that was
about 15 KiB of the 30 per stream (``bench/results/sse-memory.md``): the frames and
send wrappers of each middleware, the request's exit stack, Starlette's
``StreamingResponse`` and its task group. Here the request is answered through ASGI
up to the stream's head; then the server's protocol takes the body over
(``servicekit.detached``) and the request's task ends, so that an open stream keeps
only its :class:`notifier.streams.Stream` record and uvicorn's protocol of its
connection.

Behaviour is the route's, unchanged: the same access checks, ``Last-Event-ID``
handling, JSON error bodies (``servicekit.http``), request metrics, CORS (the app's
own ``CORSMiddleware`` settings, wrapped around this callable) and the drain on
shutdown. Everything else, other methods on this path included, goes to FastAPI, whose
route declaration in :mod:`notifier.routes` documents this one (OpenAPI) and hands
such requests back here.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from notifier import gcpauses, sse, streams
from notifier.access import job_id_of
from notifier.deps import Services
from notifier.streams import Stream
from servicekit import detached
from servicekit.compat.starlette import in_front_of_middleware, middleware_options
from servicekit.http import (
    ApiError,
    DependencyUnavailable,
    client_address,
    error_body,
    error_response,
)
from servicekit.metrics import HTTP_LATENCY, HTTP_REQUESTS
from servicekit.service import provided
from servicekit.tokens import authorize, presented_tokens

log = logging.getLogger(__name__)

PREFIX = "/tokens/analysis-progress/"
ROUTE = PREFIX + "{job_id}"
"""The route as metrics label it (as ``servicekit.metrics.HttpMetrics`` does)."""

_HEADERS = [
    (b"cache-control", b"no-cache"),
    # nginx-style proxies would otherwise buffer the stream.
    (b"x-accel-buffering", b"no"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]


def is_progress(path: str) -> bool:
    """Whether ``path`` is the route's (``{job_id}`` is one non-empty segment)."""
    return path.startswith(PREFIX) and len(path) > len(PREFIX) and "/" not in path[len(PREFIX) :]


def event_id(header: str | None, query: str | None) -> int | None:
    """The id to resume after: the header (EventSource sends it on every reconnect, to
    the URL it first opened), else the query. Both must be ids when present."""
    try:
        from_header, from_query = sse.parse_event_id(header), sse.parse_event_id(query)
    except ValueError:
        raise ApiError(
            422,
            "invalid_last_event_id",
            "Last-Event-ID must be ASCII digits, at most 9223372036854775807",
        ) from None
    return from_header if from_header is not None else from_query


class ProgressStreams:
    """The ASGI callable of the route, for the requests :func:`serve_first` routes to it
    (and those FastAPI's route declaration hands back).

    It answers what is answered at once (errors, 204) through ASGI; a stream it starts
    through ASGI too (the head: CORS adds its headers), then hands its body to the
    server's protocol (``servicekit.detached``), so that the request's task, its frames
    and uvicorn's request cycle end here: the open stream is its
    :class:`notifier.streams.Stream` record, written by the fan-out."""

    def __init__(
        self, services: Services, service: str, available: Callable[[], None] = lambda: None
    ) -> None:
        self.services = services
        self.service = service
        self.available = available
        """Raises ``DependencyUnavailable`` (a 503) while the service's start waits for a
        dependency (``servicekit.service.Service.ensure_available``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        started = time.perf_counter()
        status = 500
        try:
            live: Stream | None = None
            answer: Response = _NO_CONTENT
            try:
                live = await self._open(scope)
                if live is not None and not _detachable(scope):
                    live.abandon()
                    live = None
                    raise RuntimeError("progress streams need servicekit.serve(detached=True)")
            except ApiError as exc:
                if isinstance(exc, DependencyUnavailable):
                    # An outage is expected operation, not a bug: one line, no traceback.
                    log.warning("%s %s answered 503: %s", method, scope["path"], exc)
                answer = error_response(exc)
            except Exception as exc:
                log.exception("unhandled error", exc_info=exc)
                answer = JSONResponse(error_body("internal", "internal error"), 500)
            HTTP_LATENCY.labels(self.service, method, ROUTE).observe(time.perf_counter() - started)
            if live is None:  # an error, or 204: the client already has the final event
                status = answer.status_code
                await answer(scope, receive, send)
                return
            status = 200
            try:
                await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            except BaseException:
                live.abandon()
                raise
            # From here the protocol writes the body (live.attached), this task ends.
            await send({"type": detached.EXTENSION, "stream": live})
        finally:
            # A stream counts once its head is sent: its body is the protocol's.
            HTTP_REQUESTS.labels(self.service, method, ROUTE, str(status)).inc()

    async def _open(self, scope: Scope) -> Stream | None:
        """The checks, and where the stream starts, all before any byte is sent (a
        database outage is a 503, not a broken 200); None when the client already has
        the final event. The stream's live subscription, holding its slots."""
        self.available()
        services = self.services
        request = Request(scope)
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        job = job_id_of(scope["path"][len(PREFIX) :])
        authorize(services.tokens, job, presented_tokens(request, query.get("access_token")))
        after = event_id(request.headers.get("last-event-id"), query.get("last_event_id"))
        if services.draining:
            raise ApiError(
                503, "shutting_down", "this notifier is shutting down", {"Retry-After": "1"}
            )
        live = Stream(job, services)
        # The caps (429, or 503 when the process is full) from the head and the counts
        # alone: a refusal reads nothing from the database (docs/architecture.md §9).
        live.admit(client_address(scope))
        # Joined before the read: nothing committed in between is missed.
        services.fanout.join(live)
        try:
            live.begin = await streams.start(services.history, job, after)
            if live.begin.seen_final:
                live.abandon()
                return None
            gcpauses.stream_opened()
        except BaseException:
            live.abandon()
            raise
        return live


_NO_CONTENT = Response(status_code=204)


def _detachable(scope: Scope) -> bool:
    extensions: dict[str, object] = scope.get("extensions") or {}
    return detached.EXTENSION in extensions


class _FastPath:
    """In front of the app's middleware stack: the stream's GETs go to ``streams``."""

    __slots__ = ("app", "streams")

    def __init__(self, app: ASGIApp, streams: ASGIApp) -> None:
        self.app = app
        self.streams = streams

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine of its own: one frame fewer for every stream while it opens.
        if scope["type"] == "http" and scope["method"] == "GET" and is_progress(scope["path"]):
            return self.streams(scope, receive, send)
        return self.app(scope, receive, send)


ProgressDep = Annotated[ProgressStreams, Depends(provided(ProgressStreams))]
"""The endpoint, for the route's declaration (declared here, not in :mod:`notifier.deps`,
whose ``Services`` the endpoint itself takes)."""


def serve_first(app: FastAPI, endpoint: ProgressStreams) -> None:
    """Answer the route's GETs with ``endpoint`` before ``app``'s middleware stack.

    Starlette builds the stack on the first request; it is wrapped then
    (``servicekit.compat.starlette``), so the CORS settings the app has by that time
    (``servicekit.http.allow_origins``) apply to the stream too, in Starlette's own
    ``CORSMiddleware``."""

    def in_front(stack: ASGIApp) -> ASGIApp:
        front: ASGIApp = endpoint
        for options in reversed(middleware_options(app, CORSMiddleware)):
            front = CORSMiddleware(front, **options)
        return _FastPath(stack, front)

    in_front_of_middleware(app, in_front)


class EventStreamResponse(Response):
    """What FastAPI's declaration of the route answers (OpenAPI reads its media type
    and status): the request, handed to :class:`ProgressStreams`."""

    media_type = "text/event-stream"

    def __init__(self, endpoint: ASGIApp, status_code: int = 200) -> None:
        super().__init__(status_code=status_code)
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._endpoint(scope, receive, send)
