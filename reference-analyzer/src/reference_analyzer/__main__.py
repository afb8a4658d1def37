"""``python -m reference_analyzer`` (or ``reference-analyzer``): serve with uvicorn.

This is the reference analysis server for development, demos and tests; it is not
the production analysis server.
"""

import uvicorn

from reference_analyzer.app import create_app
from reference_analyzer.logs import configure_logging
from reference_analyzer.settings import Settings
from servicekit.telemetry import configure_tracing


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    # Continue the caller's trace, so that the webhooks belong to the job's trace.
    configure_tracing("reference-analyzer")
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # keep the logging configured above
        ws="none",
    )


if __name__ == "__main__":
    main()
