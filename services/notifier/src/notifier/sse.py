"""Server-Sent Events wire format (https://html.spec.whatwg.org/multipage/server-sent-events.html).

Events use the default type (no ``event:`` line) so that ``EventSource.onmessage``
fires, as the seed's browser code expects (docs/architecture.md §2).
"""

KEEP_ALIVE = ": keep-alive\n\n"

MAX_EVENT_ID = 2**63 - 1
"""Ids are PostgreSQL ``bigint``s."""


def parse_event_id(raw: str | None) -> int | None:
    """A ``Last-Event-ID`` as sent back: ASCII digits within int64 (docs/architecture.md §9), else
    ValueError. ``int()`` alone would take ``+3``, ``-0``, ``1_000``, `` 7`` and
    non-ASCII digits. Empty means none, as an EventSource without a last id sends none.
    """
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw.lstrip("0")) > len(str(MAX_EVENT_ID)):
        raise ValueError(f"not an event id: {raw[:40]!r}")
    value = int(raw)
    if value > MAX_EVENT_ID:
        raise ValueError(f"event id beyond int64: {raw[:40]!r}")
    return value


def retry(milliseconds: int) -> str:
    """How long the browser waits before it reconnects."""
    return f"retry: {milliseconds}\n\n"


def comment(text: str) -> str:
    return "".join(f": {line}\n" for line in text.splitlines() or [""]) + "\n"


def message(event_id: int, data: str) -> str:
    """One event; every line of ``data`` becomes its own ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"id: {event_id}\n{lines}\n"
