"""Incremental ``multipart/form-data`` reading: the ``file`` field's bytes as they
arrive, without holding the body in memory (python-multipart's push parser)."""

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELD = b"file"


class MalformedForm(ValueError):
    pass


class NotAForm(ValueError):
    """The body is not a form at all (JSON, raw bytes, ...): the media type is wrong."""


class NoFileField(ValueError):
    """The body is a form, but one that holds no `file` field (or cannot hold one)."""


def boundary_of(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind == b"application/x-www-form-urlencoded":
        # A form, just not one that can carry a file: what is missing is the field.
        raise NoFileField("the form has no `file` field (send it as multipart/form-data)")
    if kind != b"multipart/form-data":
        raise NotAForm("the body must be multipart/form-data with a `file` field")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedForm("the multipart body has no valid boundary")
    return boundary


class FileFieldReader:
    """Feed the request body in pieces; get back the ``file`` field's data in each.

    Other fields are skipped; a second ``file`` field is refused.
    """

    def __init__(self, boundary: bytes) -> None:
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._pieces: list[bytes] = []
        self.filename: str | None = None
        self.declared_type: str | None = None
        self.file_seen = False
        self.file_complete = False
        self.complete = False

    def feed(self, data: bytes) -> list[bytes]:
        self._pieces = []
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise MalformedForm(f"malformed multipart body: {exc}") from exc
        return self._pieces

    def finish(self) -> None:
        """Call at the end of the body: it must have closed the form properly."""
        if not self.complete:
            raise MalformedForm("the multipart body ended before its closing boundary")

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition"))
        if params.get(b"name") != FILE_FIELD:
            return
        if self.file_seen:
            raise MalformedForm("more than one `file` field")
        self.file_seen = self._in_file = True
        raw_name = params.get(b"filename", b"")
        self.filename = raw_name.decode("utf-8", "replace")
        ctype = self._headers.get(b"content-type")
        self.declared_type = ctype.decode("latin-1") if ctype else None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pieces.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.file_complete = True

    def _on_end(self) -> None:
        self.complete = True
