"""Server-Sent Events wire format (https://html.spec.whatwg.org/multipage/server-sent-events.html).

Events use the default type (no ``event:`` line) so that ``EventSource.onmessage``
fires, as the seed's browser code expects (DESIGN §2).
"""

import json

from notifier.projection import JobSnapshot

KEEP_ALIVE = ": keep-alive\n\n"


def retry(milliseconds: int) -> str:
    """How long the browser waits before it reconnects."""
    return f"retry: {milliseconds}\n\n"


def comment(text: str) -> str:
    return "".join(f": {line}\n" for line in text.splitlines() or [""]) + "\n"


def message(event_id: int, data: str) -> str:
    """One event; every line of ``data`` becomes its own ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"id: {event_id}\n{lines}\n"


def snapshot_event(snapshot: JobSnapshot) -> str:
    return message(snapshot.event_id, json.dumps(snapshot.public(), separators=(",", ":")))
