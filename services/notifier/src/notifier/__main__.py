"""``python -m notifier``: run the service."""

from notifier.app import SERVICE, create_app
from notifier.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings, SERVICE)


if __name__ == "__main__":
    main()
