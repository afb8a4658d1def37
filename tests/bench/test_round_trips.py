"""bench.round_trips reads PostgreSQL's statement log and the broker's request log: each
statement is put to the service of its server process, each request to its client."""

import json

import pytest

from bench.round_trips import requests, statements

pytestmark = pytest.mark.unit

POSTGRES_LOG = """\
[101] LOG:  statement: BEGIN;
[101] LOG:  execute __asyncpg_stmt_4__: SELECT pg_advisory_xact_lock(hashtext($1))
[101] DETAIL:  parameters: $1 = 'x'
[202] LOG:  execute __asyncpg_stmt_9__:
\tWITH rate AS (
\t    INSERT INTO gateway.client_rates (client_key, tat)
[303] LOG:  checkpoint starting: time
[404] LOG:  statement: SELECT 1
"""


def _completed(client: str, api: str) -> str:
    """A line of the broker's request log, as its logger writes it."""
    header = {"requestApiKey": 0, "clientId": client, "requestApiKeyName": api}
    return "Completed request:" + json.dumps(
        {"isForwarded": False, "requestHeader": header, "request": {}}, separators=(",", ":")
    )


KAFKA_LOG = [
    _completed("notifier", "OFFSET_COMMIT"),
    _completed("gateway", "PRODUCE"),
    _completed("gateway", "PRODUCE"),
]


def test_each_statement_counts_for_the_service_of_its_server_process():
    by_service, by_text = statements(POSTGRES_LOG.splitlines(), {101: "notifier", 202: "gateway"})
    assert by_service == {"notifier": 2, "gateway": 1, "other": 1}
    assert by_text["notifier: BEGIN;"] == 1
    # A statement that starts on the next line is named by that line.
    assert by_text["gateway: WITH rate AS ("] == 1


def test_each_request_counts_for_its_client_and_api():
    assert requests(KAFKA_LOG) == {
        "gateway PRODUCE": 2,
        "notifier OFFSET_COMMIT": 1,
    }
