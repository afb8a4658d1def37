"""An ASGI extension offered to one request's app by a uvicorn protocol subclass
(:mod:`servicekit.compat.uvicorn_protocols`: :mod:`servicekit.informational`,
:mod:`servicekit.detached`).

The protocol wraps each request's app, not its own ``self.app`` once: a wrapper kept on
the protocol that referred back to it would make every connection a reference cycle.
"""

from typing import Any, ClassVar, cast

from servicekit.compat.uvicorn import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPScope,
    Scope,
)

__all__ = ["RequestExtension"]


class RequestExtension:
    """One request's app, with ``scope["extensions"][name]`` where :meth:`offered` says
    it works: the app's messages of type ``name`` go to :meth:`extension`, the others to
    :meth:`passed` and on to the server."""

    __slots__ = ("app", "send")

    name: ClassVar[str]

    def __init__(self, app: ASGI3Application) -> None:
        self.app = app

    def offered(self, scope: Scope) -> bool:
        """Whether the extension works for this request (an HTTP one at least)."""
        return scope["type"] == "http"

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if not self.offered(scope):
            await self.app(scope, receive, send)
            return
        offered = cast(HTTPScope, scope)  # offered() admits only HTTP scopes
        offered["extensions"] = {**(offered.get("extensions") or {}), self.name: {}}
        self.send = send
        await self.app(scope, receive, cast(ASGISendCallable, self.sending))

    async def sending(self, message: Any) -> None:
        if message["type"] == self.name:
            self.extension(message)
        else:
            await self.passed(message)

    def extension(self, message: Any) -> None:
        """A message of the extension's type."""
        raise NotImplementedError

    async def passed(self, message: Any) -> None:
        """Any other message, on its way to the server."""
        await self.send(message)
