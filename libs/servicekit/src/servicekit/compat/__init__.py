"""The compatibility layer: every use servicekit and the services make of another
library's private names or undocumented behaviour, in one place.

Nothing outside this package imports a private name of uvicorn, Starlette, FastAPI,
FastStream or aiokafka (``_``-prefixed modules and attributes), and no source outside it
leans on what their documentation does not promise; it imports the function or class
here that does. (Some tests still reach into a client's private state to break it on
purpose, e.g. a consumer's fetcher; that is the test's own business.) Each
module says, for each reach, what it uses, why (the measured reason or the upstream
issue) and which version it was checked against:

- :mod:`servicekit.compat.uvicorn`: ASGI types, header checks, the shutdown hook, a
  failed start;
- :mod:`servicekit.compat.uvicorn_protocols`: uvicorn's httptools protocol with the
  ``http.response.detach`` and ``http.response.informational`` extensions;
- :mod:`servicekit.compat.starlette`: a front in place of the middleware stack, a
  request's ASGI send, the route a request matched;
- :mod:`servicekit.compat.faststream`: context parameters resolved on the event loop,
  the consumer's context key, the subscribers' consumers, the broker's admin client;
- :mod:`servicekit.compat.aiokafka`: the guard against writes on closed transports
  (uvloop), a consumer's fetch task, a metadata refresh;
- :mod:`servicekit.compat.openssl`: SHA-256 with a state that can leave the process.

The libraries' versions are bounded below their next minor release in every
``pyproject.toml`` that names them, and :data:`CHECKED` says which release line each
was checked against. ``libs/servicekit/tests/test_compat_upgrade.py`` asserts that each
name still exists in the shape used; on an upgrade it fails first, in one place, and
says what to re-read.
"""

from typing import Final

__all__ = ["CHECKED"]

CHECKED: Final = {
    "uvicorn": "0.54",
    "starlette": "1.10",
    "fastapi": "0.165",
    "faststream": "0.7",
    "fast-depends": "3.0",
    "aiokafka": "0.14",
}
"""The release line (major.minor) of each library this package was checked against."""
