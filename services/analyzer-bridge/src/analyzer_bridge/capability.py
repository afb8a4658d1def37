"""Per-job capability tokens for the webhook URL (docs/architecture.md §6).

The analysis server gets ``.../webhook/analysis-complete?job_id=<id>&token=<jwt>``: a
:class:`servicekit.tokens.JobTokens` token with its own audience and secret, so it
grants posting results for that one job only, and it expires some time after the job's
deadline.
"""

from servicekit.tokens import JobTokens

AUDIENCE = "audiopipe:analysis-webhook"

WEBHOOK_PATH = "/tokens/webhook/analysis-complete"
"""The route the capability URL points at (docs/architecture.md §2)."""


class Capabilities(JobTokens):
    def __init__(self, secret: str, ttl_seconds: float) -> None:
        super().__init__(secret, ttl_seconds, audience=AUDIENCE)
