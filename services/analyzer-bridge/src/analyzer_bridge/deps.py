"""What the HTTP route takes, provided by type by :mod:`analyzer_bridge.app`
(``servicekit.service.provided``): one ``Annotated`` dependency, declared here once."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from analyzer_bridge.capability import Capabilities
from analyzer_bridge.finishing import Finisher
from analyzer_bridge.ports import AnalysisStore
from analyzer_bridge.webhook_body import MAX_BODY_BYTES
from servicekit.service import provided


@dataclass(frozen=True)
class WebhookDeps:
    """What the webhook route needs."""

    store: AnalysisStore
    finisher: Finisher
    capabilities: Capabilities
    signing_secret: str | None
    tolerance_seconds: int
    max_body_bytes: int = MAX_BODY_BYTES


Deps = Annotated[WebhookDeps, Depends(provided(WebhookDeps))]
