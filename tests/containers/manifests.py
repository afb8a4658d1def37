"""What the Kubernetes manifests give each container, read from deploy/k8s, so that the
container tests run the images as a cluster would: user, read-only root filesystem,
dropped capabilities, memory and CPU limits, the ConfigMap and the Secret's keys."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DEPLOYMENT_FILES = [
    *sorted((K8S / "base").glob("*.yaml")),
    K8S / "overlays" / "example" / "reference-analyzer.yaml",
]
NAMES = ("gateway", "uploader", "analyzer-bridge", "notifier", "reference-analyzer")


@dataclass(frozen=True)
class ContainerSettings:
    name: str
    image: str
    port: int
    user: int
    group: int
    read_only: bool
    no_privilege_escalation: bool
    drop: tuple[str, ...]
    memory: str
    cpus: str
    tmp_size: str | None
    config: dict[str, str]
    """The ConfigMap's keys, for a container that loads it (envFrom)."""
    secret_keys: tuple[str, ...]
    """Variables the container takes from the Secret (the key of the same name)."""
    probes: dict[str, str]
    """startupProbe/livenessProbe/readinessProbe: the path each asks."""
    termination_grace_seconds: int


def _documents() -> list[dict[str, Any]]:
    out = []
    for path in DEPLOYMENT_FILES:
        out += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return out


def _quantity(memory: str) -> str:
    """A Kubernetes memory quantity as podman's --memory takes it (Mi → m, Gi → g)."""
    for suffix, unit in (("Mi", "m"), ("Gi", "g")):
        if memory.endswith(suffix):
            return memory.removesuffix(suffix) + unit
    raise ValueError(f"unexpected memory quantity {memory!r}")


def _cpus(cpu: str) -> str:
    return str(int(cpu.removesuffix("m")) / 1000) if cpu.endswith("m") else cpu


def container_settings(name: str) -> ContainerSettings:
    documents = _documents()
    (config,) = [d for d in documents if d["kind"] == "ConfigMap"]
    (deployment,) = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    loads_config = any(
        source.get("configMapRef", {}).get("name") == config["metadata"]["name"]
        for source in container.get("envFrom", [])
    )
    secret_keys = []
    for entry in container.get("env", []):
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["key"] == entry["name"], "each secret key is the variable's name"
        secret_keys.append(ref["key"])
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    tmp_size = volume["emptyDir"].get("sizeLimit")
    return ContainerSettings(
        name=name,
        image=container["image"],
        port=container["ports"][0]["containerPort"],
        user=pod["securityContext"]["runAsUser"],
        group=pod["securityContext"]["runAsGroup"],
        read_only=security["readOnlyRootFilesystem"],
        no_privilege_escalation=not security["allowPrivilegeEscalation"],
        drop=tuple(security["capabilities"]["drop"]),
        memory=_quantity(container["resources"]["limits"]["memory"]),
        cpus=_cpus(str(container["resources"]["limits"]["cpu"])),
        tmp_size=_quantity(tmp_size) if tmp_size else None,
        config=dict(config["data"]) if loads_config else {},
        secret_keys=tuple(secret_keys),
        probes={
            kind: container[kind]["httpGet"]["path"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        },
        termination_grace_seconds=pod["terminationGracePeriodSeconds"],
    )
