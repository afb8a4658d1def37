"""The notifier's settings rules."""

from typing import Any

import pytest

from notifier.settings import Settings

pytestmark = pytest.mark.unit


def test_production_refuses_to_start_until_who_may_upload_is_chosen() -> None:
    # The notifier checks an owner's token to list and delete its jobs: it must know
    # what the gateway was told (the rule is servicekit.settings.OwnerAuthSettings').
    secrets: dict[str, Any] = {
        "job_token_secret": "p" * 40,
        "database_url": "postgresql://u:pw-x@db/a",
    }
    with pytest.raises(ValueError, match="choose who may upload"):
        Settings(environment="production", **secrets)
    chosen = Settings(environment="production", upload_auth="anonymous", **secrets)
    assert chosen.upload_auth == "anonymous"
