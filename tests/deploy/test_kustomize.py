"""deploy/k8s as kustomize renders it (`kubectl kustomize`, what `kubectl apply -k`
applies), held to the edge (deploy/local/Caddyfile) and to the services' code: every
public route of the edge has an Ingress path to the same service with the same proxy
behaviour, the Ingresses send the edge's security headers, and every probe, port,
variable and secret names something the service really has."""

import importlib
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from servicekit.settings import ServiceSettings
from tests.deploy.kustomize import (
    edge_headers,
    edge_routes,
    kustomize_command,
    render,
    snippet_headers,
)
from tests.deploy.settings_env import MODULES, SETTINGS, default_port, env_names

pytestmark = pytest.mark.unit

Doc = dict[str, Any]
SNIPPET = "nginx.ingress.kubernetes.io/configuration-snippet"


@pytest.fixture(scope="module")
def kustomize() -> list[str]:
    command = kustomize_command()
    if command is None:
        pytest.skip("no kubectl with kustomize (and no .cache/bin/kustomize): `make containers`")
    return command


@pytest.fixture(scope="module", params=["base", "overlay"])
def rendered(
    request: pytest.FixtureRequest, kustomize: list[str], tmp_path_factory: pytest.TempPathFactory
) -> list[Doc]:
    return render(kustomize, tmp_path_factory.mktemp("k8s"), overlay=request.param == "overlay")


@pytest.fixture(scope="module")
def overlay(kustomize: list[str], tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    return render(kustomize, tmp_path_factory.mktemp("k8s"), overlay=True)


def kind(documents: list[Doc], wanted: str) -> list[Doc]:
    return [d for d in documents if d["kind"] == wanted]


def sample(pattern: str, regex: bool) -> str:
    """A concrete path a Caddyfile pattern matches."""
    job = str(uuid.uuid4())
    if regex:
        return pattern.replace("[^/]+", job)
    return pattern.replace("*", job)


def ingress_routes(documents: list[Doc], path: str) -> list[tuple[str, dict[str, str]]]:
    """(service, annotations) of every Ingress path that matches ``path``, as
    ingress-nginx matches them (Prefix by path element; regexes with use-regex)."""
    hits = []
    for ingress in kind(documents, "Ingress"):
        annotations = ingress["metadata"].get("annotations", {})
        for rule in ingress["spec"]["rules"]:
            for entry in rule["http"]["paths"]:
                if entry["pathType"] == "Prefix":
                    prefix = entry["path"].rstrip("/")
                    matched = path == prefix or path.startswith(prefix + "/")
                else:
                    assert annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true"
                    matched = re.match(entry["path"] + "$", path) is not None
                if matched:
                    hits.append((entry["backend"]["service"]["name"], annotations))
    return hits


def test_the_caddyfile_has_the_public_routes_to_check():
    services = {route.service for route in edge_routes()}
    assert services == {"gateway", "notifier", "analyzer-bridge"}
    patterns = [p for route in edge_routes() for p in route.patterns]
    assert "/uploads/[^/]+" in patterns


@pytest.mark.parametrize(
    ("pattern", "route"),
    [(p, r) for r in edge_routes() for p in r.patterns],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_edge_route_has_an_ingress_path_to_its_service_with_its_proxy_settings(
    rendered, pattern, route
):
    path = sample(pattern, route.regex)
    hits = ingress_routes(rendered, path)
    assert [service for service, _ in hits] == [route.service], path
    ((_, annotations),) = hits
    if route.flushes:
        # Caddy's `flush_interval -1`: nginx must not buffer the answer (SSE).
        assert annotations.get("nginx.ingress.kubernetes.io/proxy-buffering") == "off"
    if route.service == "gateway":
        # Caddy streams request bodies and sets no size limit: the gateway enforces it.
        assert annotations.get("nginx.ingress.kubernetes.io/proxy-request-buffering") == "off"
        assert annotations.get("nginx.ingress.kubernetes.io/proxy-body-size") == "0"


@pytest.mark.parametrize("route", edge_routes(), ids=lambda route: route.service)
def test_the_edge_closes_idle_connections_to_a_service_before_the_service_does(route):
    # A service that closes an idle keep-alive connection first races the edge's next
    # request on it, which the edge then answers 502 (seen under load after a pause).
    (keepalive,) = [o.split()[1] for o in route.options if o.startswith("keepalive ")]
    assert keepalive.endswith("s"), keepalive
    assert float(keepalive.removesuffix("s")) < ServiceSettings().http_keep_alive_seconds


def test_the_resumable_upload_resource_is_routed_like_its_creation(rendered):
    create = ingress_routes(rendered, "/tokens/t1/upload-audio")
    resume = ingress_routes(rendered, f"/uploads/{uuid.uuid4()}")
    assert create == resume and [s for s, _ in resume] == ["gateway"]


def test_every_ingress_sends_the_edges_security_headers(rendered):
    expected = edge_headers()
    assert expected[0] and "Server" in expected[1]
    ingresses = kind(rendered, "Ingress")
    assert len(ingresses) == 3
    for ingress in ingresses:
        snippet = ingress["metadata"]["annotations"][SNIPPET]
        assert snippet_headers(snippet) == expected, ingress["metadata"]["name"]


def _containers(documents: list[Doc]) -> list[tuple[str, Doc]]:
    return [
        (d["metadata"]["name"], c)
        for d in kind(documents, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


async def _answers(name: str, path: str) -> int:
    """The status the service's app (not started: no Kafka, no database) gives ``path``:
    404 where it has no such route, anything else where it has one."""
    module = importlib.import_module(f"{MODULES[name]}.app")
    transport = httpx.ASGITransport(app=module.create_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return (await client.get(path)).status_code


async def test_every_probe_asks_a_route_of_the_service_on_its_port(rendered):
    containers = _containers(rendered)
    assert containers
    for name, container in containers:
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": default_port(name)}, name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] in ports, f"{name} {probe}"
            assert await _answers(name, get["path"]) != 404, f"{name} {probe} {get['path']}"
    assert await _answers("gateway", "/no-such-probe") == 404  # the check can fail


def test_every_service_port_targets_a_named_container_port(rendered):
    by_name = {name: c for name, c in _containers(rendered)}
    for service in kind(rendered, "Service"):
        name = service["metadata"]["name"]
        named = {p["name"] for p in by_name[name]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named
            assert port["port"] == default_port(name)


def test_every_variable_is_one_its_service_reads(rendered):
    (config,) = kind(rendered, "ConfigMap")
    loaded: set[str] = set()
    for name, container in _containers(rendered):
        readable = env_names(SETTINGS[name])
        assert {e["name"] for e in container.get("env", [])} <= readable, name
        if any(
            s.get("configMapRef", {}).get("name") == config["metadata"]["name"]
            for s in container.get("envFrom", [])
        ):
            loaded |= readable
    assert set(config["data"]) <= loaded


def _secret_variables(settings: type[BaseSettings]) -> set[str]:
    """The variables of a settings class's secret fields (``SecretStr``)."""
    secret_fields = {
        name
        for name, info in settings.model_fields.items()
        if SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ()))
    }
    prefix = str(settings.model_config.get("env_prefix") or "")
    out = set()
    for name in secret_fields:
        alias = settings.model_fields[name].validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            out |= {str(c).upper() for c in choices}
        else:
            out.add((prefix + name).upper())
    return out


def test_every_secret_is_referenced_from_the_secret_never_inlined(overlay):
    (secret,) = kind(overlay, "Secret")
    (config,) = kind(overlay, "ConfigMap")
    secret_name = secret["metadata"]["name"]
    assert secret_name.startswith("audiopipe-secrets-"), "kustomize's hashed name"
    for name, container in _containers(overlay):
        secrets = _secret_variables(SETTINGS[name])
        assert not secrets & set(config["data"]), name
        given = {e["name"]: e for e in container.get("env", [])}
        for variable in secrets & set(given):
            assert "value" not in given[variable], f"{name}: {variable} inlined"
            ref = given[variable]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret_name and ref["key"] in secret["data"], variable
        for entry in given.values():
            assert "value" not in entry, f"{name}: {entry['name']} is set inline"


@pytest.mark.parametrize(
    "example", ["deploy/.env.example", "deploy/k8s/overlays/example/secrets.env.example"]
)
def test_example_secrets_are_placeholders(example):
    """Production refuses values of the repository's example files (issue 19): an
    operator must see at a glance that each is to be replaced."""
    root = Path(__file__).resolve().parents[2]
    for line in (root / example).read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if key not in ("S3_ACCESS_KEY_ID",):
                assert "change-me" in value, key
