"""deploy/k8s: every manifest valid against the Kubernetes schemas (kubernetes-validate
ships them, so this works offline), the kustomizations consistent (no kustomize here),
and the Deployments held to the production rules of issue 7."""

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from servicekit.settings import DEV_SECRETS
from tests.deploy.settings_env import SETTINGS, default_port, env_names

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
KUBERNETES_VERSION = "1.30"
"""The oldest release the manifests target (``lifecycle.preStop.sleep`` needs 1.30)."""

Doc = dict[str, Any]


def kustomization(folder: Path) -> Doc:
    document = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert isinstance(document, dict)
    return document


def resources(folder: Path) -> list[Doc]:
    """The Kubernetes objects a kustomization lists, its bases' included."""
    out: list[Doc] = []
    for entry in kustomization(folder)["resources"]:
        path = (folder / entry).resolve()
        if path.is_dir():
            out.extend(resources(path))
        else:
            out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def manifests() -> list[tuple[str, Doc]]:
    """Every Kubernetes object in a file of base or overlay (resources and patches)."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") != "Kustomization":
                out.append((str(path.relative_to(K8S)), document))
    return out


def deployments() -> list[Doc]:
    return [d for d in resources(OVERLAY) if d["kind"] == "Deployment"]


def by_kind(kind: str) -> list[Doc]:
    return [d for d in resources(OVERLAY) if d["kind"] == kind]


def test_there_are_manifests_to_check():
    kinds = {d["kind"] for _, d in manifests()}
    assert {"Deployment", "Service", "ConfigMap", "Ingress", "Namespace"} <= kinds


@pytest.mark.parametrize(
    ("where", "document"),
    manifests(),
    ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_manifest_is_valid_against_the_kubernetes_schema(where, document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_schema_check_rejects_a_misspelt_field():
    deployment = copy.deepcopy(by_kind("Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "overlay"])
def test_kustomization_lists_every_file_of_its_folder_and_nothing_missing(folder):
    spec = kustomization(folder)
    listed = [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []))]
    for entry in listed:
        assert (folder / entry).exists(), entry
    files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert files == {e for e in listed if not e.startswith("..")}


def test_base_has_a_deployment_and_a_service_per_service():
    base = resources(BASE)
    services = {"gateway", "uploader", "analyzer-bridge", "notifier"}
    assert {d["metadata"]["name"] for d in base if d["kind"] == "Deployment"} == services
    assert {d["metadata"]["name"] for d in base if d["kind"] == "Service"} == services


def test_overlay_images_and_replicas_name_what_exists():
    spec = kustomization(OVERLAY)
    images = {
        c["image"].rsplit(":", 1)[0]
        for d in deployments()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert {i["name"] for i in spec["images"]} == images
    assert all(i["newTag"] != "latest" for i in spec["images"])
    names = {d["metadata"]["name"] for d in deployments()}
    assert {r["name"] for r in spec["replicas"]} == names


def test_overlay_config_patch_sets_only_keys_of_the_base_config_map():
    (base_config,) = by_kind("ConfigMap")
    patch = yaml.safe_load((OVERLAY / "config.yaml").read_text())
    assert patch["metadata"]["name"] == base_config["metadata"]["name"]
    assert set(patch["data"]) <= set(base_config["data"])


def _json_patch_add(document: Doc, operations: list[Doc]) -> Doc:
    """RFC 6902 ``add`` (the only operation the overlay uses) applied to a copy."""
    patched = copy.deepcopy(document)
    for op in operations:
        assert op["op"] == "add"
        *parents, last = op["path"].strip("/").split("/")
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = op["value"]
    return patched


def test_overlay_ingress_patch_gives_every_ingress_a_host_and_tls():
    operations = yaml.safe_load((OVERLAY / "ingress-host.yaml").read_text())
    for ingress in by_kind("Ingress"):
        patched = _json_patch_add(ingress, operations)
        kubernetes_validate.validate(patched, KUBERNETES_VERSION, strict=True)
        assert patched["spec"]["rules"][0]["host"] == patched["spec"]["tls"][0]["hosts"][0]


def _route(path: str) -> list[str]:
    """The backend services whose Ingress rules match ``path``."""
    hits = []
    for ingress in by_kind("Ingress"):
        regex = (
            ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/use-regex")
        )
        for rule in ingress["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                if p["pathType"] == "Prefix":
                    matched = path.startswith(p["path"])
                else:
                    assert regex == "true", "ImplementationSpecific paths here are regexes"
                    matched = re.match(p["path"] + "$", path) is not None
                if matched:
                    hits.append(p["backend"]["service"]["name"])
    return hits


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/tokens/t1/upload-audio", "gateway"),
        ("/tokens/analysis-progress/5f0c8a1e-0000-4000-8000-000000000000", "notifier"),
        ("/jobs/5f0c8a1e-0000-4000-8000-000000000000", "notifier"),
        ("/tokens/webhook/analysis-complete", "analyzer-bridge"),
    ],
)
def test_ingress_routes_each_public_path_to_one_service(path, service):
    assert _route(path) == [service]


def test_ingress_streams_progress_and_uploads_unbuffered():
    annotations = {
        i["metadata"]["name"]: i["metadata"].get("annotations", {}) for i in by_kind("Ingress")
    }
    assert annotations["audiopipe-progress"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    upload = annotations["audiopipe-upload"]
    assert upload["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert upload["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["metadata"]["name"])
def test_deployment_runs_hardened_with_probes_and_resources(deployment):
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"].startswith(f"audiopipe/{name}:")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume
    assert [p["containerPort"] for p in container["ports"]] == [default_port(name)]


def _secret_keys() -> set[str]:
    lines = (OVERLAY / "secrets.env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["metadata"]["name"])
def test_deployment_environment_is_what_its_settings_read(deployment):
    name = deployment["metadata"]["name"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    readable = env_names(SETTINGS[name])
    explicit = {e["name"]: e for e in container.get("env", [])}
    assert set(explicit) <= readable
    for variable, entry in explicit.items():
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "audiopipe-secrets" and ref["key"] in _secret_keys(), variable
    required = {
        field.upper()
        for field, info in SETTINGS[name].model_fields.items()
        if getattr(info.default, "get_secret_value", None)
        and info.default.get_secret_value() in DEV_SECRETS
    }
    assert required <= set(explicit), "production mode refuses the development secrets"


def test_every_config_key_is_read_by_a_deployment_that_loads_it():
    (config,) = by_kind("ConfigMap")
    readers = [
        SETTINGS[d["metadata"]["name"]]
        for d in deployments()
        for c in d["spec"]["template"]["spec"]["containers"]
        if any(
            src.get("configMapRef", {}).get("name") == config["metadata"]["name"]
            for src in c.get("envFrom", [])
        )
    ]
    read = set().union(*(env_names(s) for s in readers))
    assert set(config["data"]) <= read
