import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from notifier.app import create_app
from notifier.deps import Services
from notifier.settings import Settings
from servicekit.service import service_of
from servicekit.tokens import JobTokens

pytestmark = pytest.mark.unit

SECRET = "notifier-unit-test-secret-32-bytes-long"


def test_a_draining_notifier_sends_new_streams_elsewhere():
    app = create_app(Settings(job_token_secret=SecretStr(SECRET)))
    service_of(app).get(Services).drain()
    job = str(uuid.uuid4())
    # No lifespan: nothing is connected, and none of it is needed to refuse.
    token = JobTokens(SECRET, 60).issue(job)
    response = TestClient(app).get(
        f"/tokens/analysis-progress/{job}", params={"access_token": token}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "shutting_down"
    assert service_of(app).get(Services).fanout.closed
