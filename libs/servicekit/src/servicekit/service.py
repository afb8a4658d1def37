"""One way to wire a service: the builder a composition root (a service's ``app.py``)
fills, then asks for its FastAPI app (docs/architecture.md §15).

What every service does the same lives here, once:

- its broker (:func:`servicekit.kafka.make_broker`) and the topics it prepares;
- its dependencies, provided by type (:meth:`Service.provide`) to Kafka handlers
  (``x: Annotated[X, Provided(X)]``) and to HTTP routes (``XDep = Annotated[X,
  Depends(provided(X))]``, declared once in the service's ``deps.py``);
- its start, in one order: resources entered (:meth:`Service.resource`: pools and
  clients), Kafka's topics prepared, the tasks that run before the broker, the broker
  (its consumers joined first, or joining in the background), the background tasks
  (:meth:`Service.background`); and its stop, in the reverse order, every task
  cancelled and awaited;
- its readiness (``/readyz``).

**A dependency down at start.** Each step of the start is tried until it succeeds,
with a pause after each failure that doubles from 1 s up to ``START_RETRY_MAX_SECONDS``
(jittered, :func:`servicekit.retry.backoff_delay`); each failed attempt is logged with
what the service waits for. The first attempt is made before the app serves, as a
lifespan that waits: when everything answers, nothing is served before everything is
there. Once a step has failed, the app serves while the start goes on in the
background: ``/healthz`` answers (alive), ``/readyz`` answers 503 saying what the
service waits for (``waiting for PostgreSQL: ... (attempt 4, next in 6.2 s)``), and a
route that takes a provided dependency answers 503 (``DependencyUnavailable``) until the
start is done. A stop meanwhile cancels the start and undoes what it had done.

**A background task that fails** is logged where it fails, with its traceback, and the
service is neither ready nor alive (``/readyz`` and ``/healthz`` 503, naming it): it is
not restarted in the process, so the orchestrator's liveness probe restarts the process.
"""

import asyncio
import contextlib
import enum
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request

from contracts import topics as all_topics
from servicekit import http
from servicekit.compat.faststream import InlineContext, prompt_batches
from servicekit.compat.uvicorn import ShutdownHook
from servicekit.http import DependencyUnavailable, NotReady, ReadinessCheck
from servicekit.kafka import (
    ConsumingInBackground,
    make_broker,
    prepare_kafka,
    stop_if_fetching_ends,
)
from servicekit.retry import backoff_delay
from servicekit.settings import ServiceSettings

__all__ = [
    "FIRST_RETRY_SECONDS",
    "Provided",
    "Service",
    "Waiting",
    "provided",
    "service_of",
    "shutdown_hook",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[], Coroutine[Any, Any, None]]
Cleanup = Callable[[], Awaitable[None]]

FIRST_RETRY_SECONDS = 1.0
"""The pause after a start step's first failure; it doubles after each further one."""


def _context_key(kind: type[Any]) -> str:
    # FastStream reads a dot in a context name as an attribute path: none in the key.
    return "provided:" + f"{kind.__module__}:{kind.__qualname__}".replace(".", "/")


class Provided(InlineContext):
    """A Kafka handler's parameter, ``x: Annotated[X, Provided(X)]``: what the service
    provided as ``X`` (:meth:`Service.provide`), found by its type rather than by a name
    that must equal the parameter's, and resolved on the event loop
    (``servicekit.compat.faststream.InlineContext``)."""

    def __init__(self, kind: type[Any]) -> None:
        super().__init__(_context_key(kind))


def service_of(app: FastAPI) -> "Service":
    """The :class:`Service` whose :meth:`Service.app` ``app`` is."""
    service = getattr(app.state, "service", None)
    if not isinstance(service, Service):
        raise LookupError("this app was not made by servicekit.service.Service.app")
    return service


def provided(kind: type[T]) -> Callable[[Request], Coroutine[Any, Any, T]]:
    """An HTTP route dependency, ``XDep = Annotated[X, Depends(provided(X))]``: what the
    app's service provided as ``X``; 503 while its start waits for a dependency."""

    async def dependency(request: Request) -> T:
        service = service_of(request.app)
        service.ensure_available()
        return service.get(kind)

    return dependency


def shutdown_hook(app: FastAPI) -> ShutdownHook | None:
    """What ``servicekit.serve`` calls first when the server shuts down: the hooks of
    ``app``'s service (:meth:`Service.on_shutdown`), if it has any."""
    service = getattr(app.state, "service", None)
    return service.shutting_down if isinstance(service, Service) else None


@dataclass(frozen=True)
class Waiting:
    """Why the start is not done: the last failed attempt at one of its steps."""

    what: str
    reason: str
    attempt: int
    next_seconds: float

    def __str__(self) -> str:
        return (
            f"waiting for {self.what}: {self.reason} "
            f"(attempt {self.attempt}, next in {self.next_seconds:.1f} s)"
        )


class _Phase(enum.Enum):
    BUILT = "not started"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"


@dataclass(frozen=True)
class _Step:
    what: str
    """What the step waits for when it fails (e.g. ``PostgreSQL``)."""
    run: Callable[[AsyncExitStack], Awaitable[None]]
    """Does the step and pushes what undoes it on the stack."""


@dataclass(frozen=True)
class _Background:
    name: str
    work: Work
    stop: Callable[[], None] | None


class Service:
    """The builder: fill it (:meth:`provide`, :meth:`resource`, :meth:`on_stop`,
    :meth:`background`, :meth:`readiness`, :meth:`on_started`, :meth:`on_shutdown`),
    then ask for the app (:meth:`app`). See the module for the start and the stop.

    ``topics`` (with ``topic_configs`` by name, e.g. a retention) are the topics the
    start makes sure exist. With ``consume_in_background`` the start ends once the
    producer is connected and the subscribers join their groups meanwhile
    (:class:`servicekit.kafka.ConsumingInBackground`: a service that answers HTTP must
    not wait ~10 s for a dead member's session after a crash); otherwise the start waits
    for them. ``request_timeout_seconds`` bounds each request to Kafka and
    ``max_batch_bytes`` sizes its producer's record batches
    (:func:`servicekit.kafka.make_broker`)."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        name: str,
        description: str,
        topics: Iterable[str] = all_topics.ALL,
        topic_configs: Mapping[str, Mapping[str, str]] | None = None,
        consume_in_background: bool = False,
        request_timeout_seconds: float = 40.0,
        max_batch_bytes: int = 16 * 1024,
    ) -> None:
        self.settings = settings
        self.name = name
        self.description = description
        self.broker = make_broker(
            settings,
            name,
            description,
            request_timeout_seconds=request_timeout_seconds,
            max_batch_bytes=max_batch_bytes,
        )
        self._topics = tuple(topics)
        self._topic_configs = topic_configs
        self._consumers = (
            ConsumingInBackground(self.broker, f"{name}'s") if consume_in_background else None
        )
        self._provided: dict[type[Any], object] = {}
        self._resources: list[_Step] = []
        self._early: list[_Background] = []
        self._background: list[_Background] = []
        self._on_started: list[Callable[[], None]] = []
        self._on_shutdown: list[ShutdownHook] = []
        self._checks: list[ReadinessCheck] = []
        self._phase = _Phase.BUILT
        self._waiting: Waiting | None = None
        self._ended: list[str] = []
        self._app: FastAPI | None = None

    # --- filling it ------------------------------------------------------------------

    def provide(self, kind: type[T], value: T) -> T:
        """Hand ``value`` to every Kafka handler parameter ``Annotated[kind,
        Provided(kind)]`` and every route dependency ``Depends(provided(kind))``."""
        if kind in self._provided:
            raise ValueError(f"{kind.__name__} is provided already")
        self._provided[kind] = value
        self.broker.context.set_global(_context_key(kind), value)
        return value

    def get(self, kind: type[T]) -> T:
        """What was provided as ``kind`` (for tests, and :func:`provided`)."""
        try:
            return cast("T", self._provided[kind])
        except KeyError:
            raise LookupError(f"{self.name} was given no {kind.__name__}") from None

    def resource(self, resource: object, what: str) -> None:
        """Enter ``resource`` at start, after what was added before it, and leave it at
        stop, once the broker has stopped and what was added after it was left.
        ``what`` names what the start waits for while entering fails (``PostgreSQL``).
        An object that is no async context manager (a test's fake) is taken as it is."""
        if not isinstance(resource, AbstractAsyncContextManager):
            return
        entered: AbstractAsyncContextManager[Any] = resource

        async def enter(stack: AsyncExitStack) -> None:
            await stack.enter_async_context(entered)

        self._resources.append(_Step(what, enter))

    def on_stop(self, cleanup: Cleanup) -> None:
        """Await ``cleanup`` at stop where a resource added now would be left: after the
        broker stopped, before the resources added earlier are left."""

        async def push(stack: AsyncExitStack) -> None:
            stack.push_async_callback(cleanup)

        self._resources.append(_Step(self.name, push))

    def background(
        self,
        work: Work,
        *,
        name: str,
        before_broker: bool = False,
        stop: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work()`` as a task from the start until the stop, which calls ``stop``
        (a flag that ends a loop whose library may swallow a cancellation), cancels the
        task and awaits it. Started once the broker runs (it may publish), and stopped
        before it; ``before_broker``: started before the broker, stopped after it."""
        (self._early if before_broker else self._background).append(_Background(name, work, stop))

    def readiness(self, *checks: ReadinessCheck) -> None:
        """Add checks to ``/readyz``, after the start's own (the start is done)."""
        self._checks.extend(checks)

    def on_started(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the start is done."""
        self._on_started.append(callback)

    def on_shutdown(self, hook: ShutdownHook) -> None:
        """Call ``hook`` first when the server starts shutting down, before it stops
        accepting connections and waits for the open responses (``servicekit.serve``)."""
        self._on_shutdown.append(hook)

    def app(self, *, title: str) -> FastAPI:
        """The service's FastAPI app (:func:`servicekit.http.create_app`), its lifespan
        the start and the stop; add routes and CORS to it."""
        if self._app is not None:
            raise RuntimeError("a Service makes one app")
        checks: list[ReadinessCheck] = [self._started, *self._checks]
        if self._consumers is not None:
            checks.append(self._consumers.alive)
        app = http.create_app(
            title=title,
            description=self.description,
            service=self.name,
            lifespan=self._lifespan,
            readiness=checks,
            liveness=[self._alive],
        )
        app.state.service = self
        self._app = app
        return app

    # --- serving ---------------------------------------------------------------------

    def ensure_available(self) -> None:
        """What a request that needs the provided dependencies checks first:
        ``DependencyUnavailable`` while the start waits for one of them."""
        if self._phase is not _Phase.STARTING:
            return
        waiting = self._waiting
        if waiting is None:
            raise DependencyUnavailable(self.name, detail="starting")
        raise DependencyUnavailable(
            waiting.what, max(1, math.ceil(waiting.next_seconds)), str(waiting)
        )

    def shutting_down(self) -> None:
        for hook in self._on_shutdown:
            hook()

    async def _alive(self) -> bool:
        """Liveness: no background task has died (it is not restarted in the process, so
        the process should be)."""
        if self._ended:
            raise NotReady(f"background tasks ended: {', '.join(self._ended)}")
        return True

    async def _started(self) -> bool:
        if self._phase is _Phase.STARTING and self._waiting is not None:
            raise NotReady(str(self._waiting))
        if self._phase is not _Phase.STARTED:
            raise NotReady(self._phase.value)
        if self._ended:
            raise NotReady(f"background tasks ended: {', '.join(self._ended)}")
        return True

    # --- the start and the stop --------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        stack = AsyncExitStack()
        self._phase, self._waiting, self._ended = _Phase.STARTING, None, []
        failed_once = asyncio.Event()
        starting = asyncio.create_task(self._start(stack, failed_once), name=f"{self.name}: start")
        try:
            failure = asyncio.create_task(failed_once.wait())
            try:
                await asyncio.wait({starting, failure}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                failure.cancel()
            if starting.done():
                starting.result()  # a start that raised is a bug: the process does not start
            else:
                log.warning("%s serves while its start goes on (not ready)", self.name)
            yield
        finally:
            self._phase = _Phase.STOPPING
            starting.cancel()
            await asyncio.wait({starting})
            if not starting.cancelled() and starting.exception() is not None:
                log.error("the start of %s failed", self.name, exc_info=starting.exception())
            await stack.aclose()

    async def _start(self, stack: AsyncExitStack, failed_once: asyncio.Event) -> None:
        steps = [
            *self._resources,
            _Step("Kafka", self._prepare_kafka),
            *(self._launch(task) for task in self._early),
            _Step("Kafka", self._start_broker),
            *(self._launch(task) for task in self._background),
        ]
        for step in steps:
            await self._until_done(step, stack, failed_once)
        waited, self._phase, self._waiting = self._waiting, _Phase.STARTED, None
        if waited is not None:
            log.info("%s started: every dependency answers", self.name)
        for callback in self._on_started:
            callback()

    async def _until_done(
        self, step: _Step, stack: AsyncExitStack, failed_once: asyncio.Event
    ) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await step.run(stack)
            except Exception as exc:
                pause = backoff_delay(
                    attempt,
                    FIRST_RETRY_SECONDS,
                    self.settings.start_retry_max_seconds,
                    jitter=_upper_half,
                )
                self._waiting = Waiting(step.what, _reason(exc), attempt, pause)
                log.warning("%s", self._waiting, exc_info=log.isEnabledFor(logging.DEBUG))
                failed_once.set()
                await asyncio.sleep(pause)
            else:
                if attempt > 1:
                    log.info("%s answers (attempt %d)", step.what, attempt)
                return

    async def _prepare_kafka(self, _: AsyncExitStack) -> None:
        await prepare_kafka(self.settings, self._topics, configs=self._topic_configs)

    async def _start_broker(self, stack: AsyncExitStack) -> None:
        prompt_batches(self.broker)
        try:
            if self._consumers is None:
                await self.broker.start()
            else:
                await self.broker.connect()
        except BaseException:
            # What started (the producer, some consumers) stops before the next attempt.
            with contextlib.suppress(Exception):
                await self.broker.stop()
            raise
        stack.push_async_callback(self.broker.stop)
        if self._consumers is None:
            stop_if_fetching_ends(self.broker)
        else:
            self._consumers.start()
            stack.push_async_callback(self._consumers.stop)

    def _launch(self, background: _Background) -> _Step:
        async def launch(stack: AsyncExitStack) -> None:
            task = asyncio.create_task(self._supervised(background), name=background.name)
            stack.push_async_callback(_cancelled, task, background.stop)

        return _Step(background.name, launch)

    async def _supervised(self, background: _Background) -> None:
        try:
            await background.work()
        except Exception:
            log.exception("the background task %s failed", background.name)
        else:
            if self._phase is _Phase.STOPPING:
                return  # its stop flag ended it
            log.error("the background task %s ended", background.name)
        if self._phase is not _Phase.STOPPING:
            self._ended.append(background.name)


async def _cancelled(task: "asyncio.Task[None]", stop: Callable[[], None] | None) -> None:
    if stop is not None:
        stop()
    task.cancel()
    await asyncio.wait({task})  # a failure was logged where it happened


def _upper_half() -> float:
    """Jitter in [0.5, 1): replicas do not retry in lockstep, nor much sooner than the
    doubling says."""
    return 0.5 + random.random() / 2


def _reason(exc: Exception) -> str:
    if isinstance(exc, DependencyUnavailable) and exc.detail:
        text = exc.detail
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
