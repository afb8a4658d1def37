from gateway.app import build_app
from gateway.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    # Informational responses: the resumable upload draft's 104 (docs/architecture.md §12).
    serve(build_app(settings), settings, "gateway", informational=True)


if __name__ == "__main__":
    main()
