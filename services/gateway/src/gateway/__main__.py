from gateway.app import build_app
from gateway.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings, "gateway")


if __name__ == "__main__":
    main()
