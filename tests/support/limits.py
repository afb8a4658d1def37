"""The gateway's fair-use limits in the tests (docs/architecture.md §6)."""

# Every test client comes from 127.0.0.1 and most upload far faster than a person, so the
# tests raise the gateway's fair-use limits (docs/architecture.md §6) well above what
# they do; the limits are still counted on every upload. The tests of the limits set
# their own (tests/fairuse, services/gateway/tests/test_fair_use.py).
TEST_UPLOAD_LIMITS = {
    "UPLOAD_RATE_PER_MINUTE": "100000",
    "UPLOAD_RATE_BURST": "10000",
    "UPLOADS_OPEN_PER_CLIENT": "1000",
    "UPLOAD_BYTES_PER_DAY": str(1024**4),
    "UPLOAD_BYTES_IN_FLIGHT": str(1024**4),
}
