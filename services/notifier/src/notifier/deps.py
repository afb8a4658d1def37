"""What the HTTP routes take, built once in :mod:`notifier.app` and provided by type
(``servicekit.service.provided``): one ``Annotated`` dependency, declared here once."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from notifier.fanout import FanOut
from notifier.lifecycle import Deleter
from notifier.ports import History, Lifecycle
from notifier.settings import Settings
from notifier.slots import StreamSlots
from notifier.streams import Heartbeats
from servicekit.auth import OwnerAuth
from servicekit.service import provided
from servicekit.tokens import JobTokens


@dataclass
class Services:
    settings: Settings
    tokens: JobTokens
    fanout: FanOut
    slots: StreamSlots
    history: History
    """The projection's read side; ``DependencyUnavailable`` while it is not open."""
    heartbeats: Heartbeats
    """The one clock that writes the keep-alives of idle streams and ends old ones."""
    auth: OwnerAuth
    """Owners' bearer JWTs (``UPLOAD_AUTH``): who lists and deletes its jobs."""
    lifecycle: Lifecycle
    """Owners' jobs, and what a deletion reads and erases."""
    deleter: Deleter
    draining: bool = False
    """Set when the process starts shutting down: no new streams."""

    def drain(self) -> None:
        """End every open stream now, so that its client resumes on another replica
        by Last-Event-ID instead of holding this process's shutdown (issue 5)."""
        self.draining = True
        self.fanout.close_all()


ServicesDep = Annotated[Services, Depends(provided(Services))]
