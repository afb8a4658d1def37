"""``python -m notifier``: run the service through the shared start path."""

from notifier.app import SERVICE, create_app
from notifier.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    app = create_app(settings)
    # Shutdown first ends the open streams, so their clients resume elsewhere by
    # Last-Event-ID instead of holding the shutdown (docs/architecture.md §9).
    # Streams are written by the protocol itself (servicekit.detached, issue 14).
    serve(app, settings, SERVICE, on_shutdown=app.state.services.drain, detached=True)


if __name__ == "__main__":
    main()
