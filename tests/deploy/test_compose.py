"""deploy/compose.yaml: valid against the Compose Specification schema, started in
health order, and configured with the variables the services really read."""

import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from servicekit.settings import DEV_SECRETS
from tests.deploy.settings_env import MODULES, SETTINGS, default_port, env_names

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
APPS = sorted(MODULES)


def compose_schema() -> dict[str, Any]:
    # The compose-spec schema as check-jsonschema vendors it (`--builtin-schema
    # vendor.compose-spec`), so the check works offline.
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def test_compose_file_is_valid_against_the_compose_spec(compose):
    assert schema_errors(compose) == []


def test_compose_schema_check_rejects_a_wrong_start_condition(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["depends_on"]["kafka"]["condition"] = "service_ready"
    assert schema_errors(broken)


def test_compose_runs_infrastructure_edge_services_and_reference_analyzer(compose):
    assert set(compose["services"]) == {"kafka", "s3", "postgres", "edge", *APPS}
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == (
        "broker,controller"
    )


def test_every_dependency_waits_for_a_health_check(compose):
    services = compose["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
        for needed, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} → {needed}"
            assert needed in services


@pytest.mark.parametrize("name", APPS)
def test_app_is_built_from_its_dockerfile_and_hardened(compose, name):
    service = compose["services"][name]
    assert service["build"]["context"] == ".."
    assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert service["build"]["args"]["PACKAGE"] == name
    assert (COMPOSE.parent / ".." / service["build"]["dockerfile"]).is_file()
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])


@pytest.mark.parametrize("name", APPS)
def test_app_gets_only_variables_its_settings_read(compose, name):
    given = set(compose["services"][name]["environment"])
    unknown = given - env_names(SETTINGS[name])
    assert not unknown, f"{name} does not read {sorted(unknown)}"


@pytest.mark.parametrize("name", APPS)
def test_app_gets_every_secret_production_mode_requires(compose, name):
    settings = SETTINGS[name]
    required = {
        field.upper()
        for field, info in settings.model_fields.items()
        if getattr(info.default, "get_secret_value", None)
        and info.default.get_secret_value() in DEV_SECRETS
    }
    environment = compose["services"][name]["environment"]
    assert required <= set(environment)
    for variable in required:
        assert str(environment[variable]).startswith("${"), f"{variable} is not from .env"


def test_urls_between_containers_name_compose_services_and_their_ports(compose):
    services = compose["services"]
    bridge = services["analyzer-bridge"]["environment"]
    analysis = urlsplit(bridge["ANALYSIS_SERVER_URL"])
    assert analysis.hostname == "reference-analyzer"
    assert analysis.port == default_port("reference-analyzer")
    assert urlsplit(bridge["PUBLIC_BASE_URL"]).hostname == "edge"
    for name in ("uploader", "analyzer-bridge"):
        assert urlsplit(services[name]["environment"]["S3_ENDPOINT_URL"]).hostname == "s3"


def test_edge_uses_the_local_caddyfile_with_every_variable_pointing_at_a_service(compose):
    edge = compose["services"]["edge"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in edge["volumes"]}
    caddyfile = (COMPOSE.parent / mounts["/etc/caddy/Caddyfile"]).resolve()
    assert caddyfile == ROOT / "deploy" / "local" / "Caddyfile"
    assert (COMPOSE.parent / mounts[edge["environment"]["WEB_ROOT"]]).resolve() == ROOT / "web"
    config = "\n".join(
        line for line in caddyfile.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    used = set(re.findall(r"\{\$([A-Z_]+)", config))
    assert used <= set(edge["environment"])
    for variable, service in [
        ("GATEWAY_ADDR", "gateway"),
        ("NOTIFIER_ADDR", "notifier"),
        ("ANALYZER_BRIDGE_ADDR", "analyzer-bridge"),
    ]:
        assert edge["environment"][variable] == f"{service}:{default_port(service)}"


def test_env_example_names_every_variable_compose_requires():
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    example = COMPOSE.parent / ".env.example"
    given = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required and required <= given
