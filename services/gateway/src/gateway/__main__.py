from gateway.app import create_app
from gateway.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings, "gateway")


if __name__ == "__main__":
    main()
