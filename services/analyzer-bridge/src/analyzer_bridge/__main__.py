from analyzer_bridge.app import SERVICE, create_app
from analyzer_bridge.settings import Settings
from servicekit.serve import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings, SERVICE)


if __name__ == "__main__":
    main()
