"""What servicekit and the services use of Starlette, and of FastAPI on top of it, that
they do not promise (checked against Starlette 1.10.0, FastAPI 0.165.0).

- **Something in front of the middleware stack** (:func:`in_front_of_middleware`,
  :func:`middleware_options`; undocumented: ``Starlette.build_middleware_stack()``, which
  ``Starlette.__call__`` calls once, on the first request, and ``app.user_middleware``,
  the ``Middleware`` entries (``cls``, ``kwargs``) that ``add_middleware`` collected,
  outermost first). The notifier answers its progress streams before FastAPI's
  middleware and routing, with the app's own CORS settings, because whatever a request
  keeps while it streams is paid per open stream (docs/architecture.md §9).
  OpenTelemetry's FastAPI instrumentation wraps the same method; both wrappers compose.
- **The ASGI send of a request** (:func:`asgi_send`; private: ``Request._send``, which
  Starlette's own ``send_push_promise`` and ``send_early_hint`` use): a route sends an
  ASGI extension's message through it (the gateway's ``104``, ``servicekit.informational``).
- **The route a request matched** (:func:`route_path`; undocumented: FastAPI's routes
  put themselves in ``scope["route"]``): metrics label a request by its route's
  template, not by its path (one series per route, not per job id).

``libs/servicekit/tests/test_compat_upgrade.py`` checks that each name still exists.
"""

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Scope, Send

__all__ = ["asgi_send", "in_front_of_middleware", "middleware_options", "route_path"]


def in_front_of_middleware(app: Starlette, front: Callable[[ASGIApp], ASGIApp]) -> None:
    """Have ``front(stack)`` answer in place of ``app``'s middleware stack, once
    Starlette builds that stack (on the first request, so that the middleware added by
    then is in it). Call it before the first request."""
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return front(build())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


def middleware_options(app: Starlette, cls: type) -> list[dict[str, Any]]:
    """The keyword options of each ``cls`` middleware added to ``app``, outermost first."""
    options: list[dict[str, Any]] = []
    for middleware in app.user_middleware:
        factory: object = middleware.cls
        if factory is cls:
            options.append(middleware.kwargs)
    return options


def asgi_send(request: Request) -> Send:
    """The ASGI ``send`` of ``request``'s connection (for messages Starlette has no
    method for; the response itself goes out as usual)."""
    return request._send


def route_path(scope: Scope, unmatched: str) -> str:
    """The path template of the FastAPI route ``scope`` matched (``/jobs/{job_id}``), or
    ``unmatched`` when it matched none (yet)."""
    path: str = getattr(scope.get("route"), "path", unmatched)
    return path
