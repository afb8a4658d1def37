"""What the HTTP routes need, built once in :mod:`notifier.app`."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from notifier.fanout import FanOut
from notifier.settings import Settings
from notifier.store import Store
from notifier.streams import StreamSlots
from servicekit.http import DependencyUnavailable
from servicekit.postgres import DEPENDENCY
from servicekit.tokens import JobTokens


@dataclass
class Services:
    settings: Settings
    tokens: JobTokens
    fanout: FanOut
    slots: StreamSlots
    store: Store | None = None
    """Set once the database pool is open (in the app's lifespan)."""
    draining: bool = False
    """Set when the process starts shutting down: no new streams."""

    def require_store(self) -> Store:
        if self.store is None:
            raise DependencyUnavailable(DEPENDENCY, 1, "the pool is not open (start or stop)")
        return self.store

    def drain(self) -> None:
        """End every open stream now, so that its client resumes on another replica
        by Last-Event-ID instead of holding this process's shutdown (issue 5)."""
        self.draining = True
        self.fanout.close_all()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]
