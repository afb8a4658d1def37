"""``python -m notifier``: run the service."""

from notifier.server import serve
from notifier.settings import Settings


def main() -> None:
    serve(Settings())


if __name__ == "__main__":
    main()
