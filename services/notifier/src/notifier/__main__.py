"""``python -m notifier``: run the service through the shared start path."""

from notifier.app import SERVICE, create_app
from notifier.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    # Streams are written by the protocol itself (servicekit.detached, issue 14); the
    # shutdown ends them first (the service's shutdown hook, notifier.app).
    serve(create_app(settings), settings, SERVICE, detached=True)


if __name__ == "__main__":
    main()
