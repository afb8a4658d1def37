from servicekit.serve import serve
from uploader.app import build_app
from uploader.settings import Settings


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings, "uploader")


if __name__ == "__main__":
    main()
