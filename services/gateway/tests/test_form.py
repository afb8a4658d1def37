import pytest

from gateway.form import FileFieldReader, MalformedForm, NoFileField, NotAForm, boundary_of

pytestmark = pytest.mark.unit

BOUNDARY = b"XyZ123"


def _body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode()
        out += b"\r\nContent-Type: audio/wav\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def _read(body: bytes, piece: int) -> tuple[FileFieldReader, bytes]:
    reader = FileFieldReader(BOUNDARY)
    got = b"".join(b"".join(reader.feed(body[i : i + piece])) for i in range(0, len(body), piece))
    reader.finish()
    return reader, got


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_file_bytes_come_out_whole_however_the_body_is_split(piece: int) -> None:
    data = bytes(range(256)) * 40
    reader, got = _read(_body(("note", None, b"hi"), ("file", "a b.wav", data)), piece)
    assert got == data
    assert reader.filename == "a b.wav"
    assert reader.declared_type == "audio/wav"
    assert reader.file_seen


def test_a_body_without_closing_boundary_is_malformed() -> None:
    body = _body(("file", "x.wav", b"abc"))[:-10]
    reader = FileFieldReader(BOUNDARY)
    reader.feed(body)
    with pytest.raises(MalformedForm):
        reader.finish()


def test_two_file_fields_are_refused() -> None:
    with pytest.raises(MalformedForm):
        _read(_body(("file", "a.wav", b"1"), ("file", "b.wav", b"2")), 4096)


def test_garbage_is_malformed() -> None:
    reader = FileFieldReader(BOUNDARY)
    with pytest.raises(MalformedForm):
        reader.feed(b"this is not multipart at all\r\n" * 4)


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain; boundary=x"])
def test_a_body_that_is_not_a_form_is_told_apart(content_type: str | None) -> None:
    with pytest.raises(NotAForm):
        boundary_of(content_type)


def test_a_urlencoded_form_is_a_form_without_a_file_field() -> None:
    with pytest.raises(NoFileField, match="`file`"):
        boundary_of("application/x-www-form-urlencoded")


def test_multipart_without_a_boundary_is_malformed() -> None:
    with pytest.raises(MalformedForm, match="boundary"):
        boundary_of("multipart/form-data")
