from gateway.app import create_app
from gateway.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    # Informational responses: the resumable upload draft's 104 (docs/architecture.md §12).
    serve(create_app(settings), settings, "gateway", informational=True)


if __name__ == "__main__":
    main()
