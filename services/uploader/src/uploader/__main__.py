from servicekit.serve import serve
from uploader.app import SERVICE, create_app
from uploader.settings import Settings


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings, SERVICE)


if __name__ == "__main__":
    main()
