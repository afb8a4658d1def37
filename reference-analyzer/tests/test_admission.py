"""Who may ask for an analysis: the signature checks of ``POST /analyze`` and the
memory of requests that started one (``reference_analyzer.admission``)."""

import pytest

from reference_analyzer.admission import BodyTooLarge, RequestGuard, Unauthorized
from servicekit.webhooks import signed_headers

pytestmark = pytest.mark.unit

SECRET = "whsec_" + "c2lnbmluZy1rZXktb2YtdGhlLWJyaWRnZS0zMmJ5dGVz"
OTHER = "whsec_" + "YW5vdGhlci1rZXktbm90LXRoZS1icmlkZ2VzLTMyYg=="
BODY = b'{"job_id": "j"}'
NOW = 1_700_000_000


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock | None = None, **kwargs) -> RequestGuard:
    return RequestGuard(SECRET, 300, clock=clock or Clock(), **kwargs)


def test_a_request_signed_with_the_secret_passes():
    headers = signed_headers(SECRET, "msg_1", NOW, BODY)
    guard().check_headers(headers)
    guard().check(headers, BODY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": str(NOW)},  # no signature
        signed_headers(SECRET, "msg_1", NOW - 301, BODY),  # stale
        signed_headers(SECRET, "msg_1", NOW + 301, BODY),  # from the future
        {**signed_headers(SECRET, "msg_1", NOW, BODY), "webhook-timestamp": "soon"},
    ],
    ids=["unsigned", "no-signature", "stale", "future", "bad-timestamp"],
)
def test_what_the_headers_decide_is_refused_before_the_body(headers):
    with pytest.raises(Unauthorized):
        guard().check_headers(headers)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (signed_headers(OTHER, "msg_1", NOW, BODY), BODY),  # another key
        (signed_headers(SECRET, "msg_1", NOW, BODY), BODY + b" "),  # body changed
        (signed_headers(SECRET, "msg_2", NOW, BODY) | {"webhook-id": "msg_1"}, BODY),
    ],
    ids=["forged", "tampered-body", "tampered-id"],
)
def test_a_forged_or_altered_request_is_refused(headers, body):
    checker = guard()
    checker.check_headers(headers)  # the headers alone look fine
    with pytest.raises(Unauthorized):
        checker.check(headers, body)


def test_without_a_secret_nothing_is_required():
    open_guard = RequestGuard(None)
    assert not open_guard.required
    open_guard.check_headers({})
    open_guard.check({}, BODY)


def test_a_request_that_started_an_analysis_is_known_while_its_replay_could_pass():
    clock = Clock()
    checker = guard(clock)
    headers = signed_headers(SECRET, "msg_1", NOW, BODY)
    assert not checker.already_started(headers)
    checker.started(headers)
    assert checker.already_started(headers)
    assert checker.already_started(signed_headers(SECRET, "msg_1", NOW + 60, b"retry"))
    assert not checker.already_started(signed_headers(SECRET, "msg_2", NOW, BODY))
    clock.now = NOW + 299
    assert checker.already_started(headers)
    clock.now = NOW + 301  # a replay of it is stale now, refused anyway
    assert not checker.already_started(headers)


def test_the_memory_of_started_requests_is_bounded():
    checker = guard(max_remembered=2)
    for n in range(3):
        checker.started(signed_headers(SECRET, f"msg_{n}", NOW, BODY))
    known = [checker.already_started({"webhook-id": f"msg_{n}"}) for n in range(3)]
    assert known == [False, True, True]


def test_a_request_without_an_id_is_never_taken_for_a_replay():
    checker = RequestGuard(None)
    checker.started({})
    assert not checker.already_started({})


class Chunks:
    """A body that records whether any of it was read."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks, self.read = chunks, 0

    async def __aiter__(self):
        for chunk in self.chunks:
            self.read += 1
            yield chunk


async def test_admit_returns_the_body_of_a_signed_request():
    headers = signed_headers(SECRET, "msg_1", NOW, BODY)
    assert await guard().admit(headers, Chunks(BODY[:5], BODY[5:])) == BODY


async def test_admit_refuses_an_unsigned_request_before_reading_its_body():
    body = Chunks(BODY)
    with pytest.raises(Unauthorized):
        await guard().admit({}, body)
    assert body.read == 0


async def test_admit_refuses_a_declared_length_over_the_limit_before_reading():
    headers = signed_headers(SECRET, "msg_1", NOW, BODY) | {"content-length": "65"}
    body = Chunks(BODY)
    with pytest.raises(BodyTooLarge):
        await guard(max_body_bytes=64).admit(headers, body)
    assert body.read == 0


async def test_admit_stops_reading_a_body_as_soon_as_it_passes_the_limit():
    headers = signed_headers(SECRET, "msg_1", NOW, BODY)
    body = Chunks(b"x" * 40, b"x" * 40, b"x" * 40)
    with pytest.raises(BodyTooLarge):
        await guard(max_body_bytes=64).admit(headers, body)
    assert body.read == 2
