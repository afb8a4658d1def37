"""Parsing the few Structured Field values (RFC 9651) the resumable protocols use."""

import base64
import binascii
import re

_INTEGER = re.compile(r"^[0-9]{1,15}$")


def sf_integer(value: str | None) -> int | None:
    """A non-negative sf-integer, or None for a missing or invalid value (the draft:
    other values cause the field to be ignored)."""
    if value is None or not _INTEGER.match(value.strip()):
        return None
    return int(value.strip())


def sf_boolean(value: str | None) -> bool | None:
    return {"?1": True, "?0": False}.get((value or "").strip())


def repr_sha256(value: str | None) -> str | None:
    """The hex sha-256 from a ``Repr-Digest`` dictionary (RFC 9530), if it has one."""
    for member in (value or "").split(","):
        name, _, item = member.strip().partition("=")
        if name.strip() == "sha-256" and item.startswith(":") and item.endswith(":"):
            try:
                raw = base64.b64decode(item[1:-1], validate=True)
            except binascii.Error:
                return None
            return raw.hex() if len(raw) == 32 else None
    return None


def sha256_field(hex_digest: str) -> str:
    return "sha-256=:" + base64.b64encode(bytes.fromhex(hex_digest)).decode() + ":"


def filename_of_disposition(value: str | None) -> str | None:
    match = re.search(r'filename="([^"]*)"|filename=([^;\s]+)', value or "")
    return (match.group(1) or match.group(2)) if match else None
