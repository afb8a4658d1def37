"""The checked-in AsyncAPI and OpenAPI documents are what the code generates now."""

from pathlib import Path

import pytest
import yaml

from contracts import topics
from docs import generate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def documents() -> dict[Path, str]:
    return generate.documents()


def test_checked_in_interface_documents_are_up_to_date(documents):
    stale = [
        str(path)
        for path, text in documents.items()
        if not (generate.DOCS / path).is_file() or (generate.DOCS / path).read_text() != text
    ]
    assert not stale, f"out of date (run `make docs`): {stale}"


def test_no_stale_document_is_left_behind(documents):
    on_disk = {
        p.relative_to(generate.DOCS)
        for folder in ("asyncapi", "openapi")
        for p in (generate.DOCS / folder).iterdir()
    }
    assert on_disk == set(documents)


def test_stale_reports_a_changed_document(tmp_path, documents):
    for path, text in documents.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    changed = Path("openapi", "gateway.json")
    (tmp_path / changed).write_text("{}\n")
    assert generate.stale(tmp_path) == [changed]


def test_asyncapi_documents_cover_every_topic(documents):
    addresses = {
        channel["address"]
        for path, text in documents.items()
        if path.parts[0] == "asyncapi"
        for channel in yaml.safe_load(text)["channels"].values()
    }
    assert set(topics.ALL) <= addresses


def test_openapi_documents_hold_the_public_routes(documents):
    paths = {
        route
        for path, text in documents.items()
        if path.parts[0] == "openapi"
        for route in yaml.safe_load(text)["paths"]
    }
    assert {
        "/tokens/{token_id}/upload-audio",
        "/tokens/analysis-progress/{job_id}",
        "/jobs/{job_id}",
        "/tokens/webhook/analysis-complete",
    } <= paths
