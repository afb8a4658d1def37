"""The example overlay as kustomize renders it, run with `podman kube play`: the
Deployments' own pod specs (user, security context, limits, emptyDir, ConfigMap
through envFrom, secrets through secretKeyRef) start the images, on the tests' stack.

What differs from a cluster, and why: the ConfigMap's addresses are this stack's; the
pods use the host's network (the stack's Kafka advertises 127.0.0.1, see conftest.py)
and listen on 127.0.0.1 at the ports the stack's edge routes to (no declared container
port: podman would map it, which the host's network refuses); one replica each; the
Secret becomes a podman secret of the same name (kube play reads secretKeyRef from
podman secrets). podman runs no readinessProbe and no startupProbe, so the test asks
every readiness path itself, as a kubelet would, before it sends an upload."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.engine import Engine
from deploy.images import image_name
from tests.containers.conftest import OwnStack
from tests.containers.test_images_run import _final_status, _upload
from tests.deploy.kustomize import kustomize_command, render

pytestmark = pytest.mark.containers

Doc = dict[str, Any]


@dataclass
class Played:
    engine: Engine
    deployments: list[Doc]
    ports: dict[str, int]
    edge_url: str


def _for_this_machine(documents: list[Doc], own: OwnStack) -> list[Doc]:
    """The ConfigMap and the Deployments, changed only as the module docstring says."""
    infra = own.stack.env()
    addresses = {
        "KAFKA_BOOTSTRAP_SERVERS": infra["KAFKA_BOOTSTRAP_SERVERS"],
        "S3_ENDPOINT_URL": infra["S3_ENDPOINT_URL"],
        "S3_PRESIGN_ENDPOINT_URL": infra["S3_ENDPOINT_URL"],
        "ANALYSIS_SERVER_URL": f"http://127.0.0.1:{own.ports['reference-analyzer']}",
        "PUBLIC_BASE_URL": own.stack.edge_url,
        # The ConfigMap leaves the bucket to the operator; the stack made it.
    }
    out = []
    for doc in documents:
        if doc["kind"] == "ConfigMap":
            doc["data"].update({k: v for k, v in addresses.items() if k in doc["data"]})
            out.append(doc)
        elif doc["kind"] == "Deployment":
            name = doc["metadata"]["name"]
            doc["spec"]["replicas"] = 1
            pod = doc["spec"]["template"]["spec"]
            pod["hostNetwork"] = True
            (container,) = pod["containers"]
            port = own.ports[name]
            # podman 4.3 turns any declared port into a port mapping, which the host's
            # network refuses; the probes name the port by number instead.
            del container["ports"]
            container.setdefault("env", []).extend(
                [
                    {"name": "HTTP_HOST", "value": "127.0.0.1"},
                    {"name": "HTTP_PORT", "value": str(port)},
                ]
            )
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                container[probe]["httpGet"]["port"] = port
            out.append(doc)
    return out


@pytest.fixture(scope="module")
def played(
    container_engine: Engine, own_infra: OwnStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Played]:
    if not container_engine.is_podman:
        pytest.skip("`kube play` is podman's")
    command = kustomize_command()
    if command is None:
        pytest.skip("no kustomize (`make containers`)")
    tmp = tmp_path_factory.mktemp("kube-play")
    documents = render(command, tmp, overlay=True, secrets=own_infra.secrets)
    (secret,) = [d for d in documents if d["kind"] == "Secret"]
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    run = container_engine.run
    tags = []
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        run("tag", image_name(deployment["metadata"]["name"]), container["image"])
        tags.append(container["image"])
    secret_name = secret["metadata"]["name"]
    secret_file = tmp / "secret.json"
    # podman 4.3 reads a secretKeyRef from a JSON map of base64 values: the data.
    secret_file.write_text(json.dumps(secret["data"]))
    run("secret", "rm", secret_name, check=False)
    run("secret", "create", secret_name, str(secret_file))
    play = tmp / "play.yaml"
    play.write_text(yaml.safe_dump_all(_for_this_machine(documents, own_infra)))
    # What an interrupted run left (kube play names a Deployment's pod <name>-pod-0).
    for deployment in deployments:
        run("pod", "rm", "--force", "--ignore", f"{deployment['metadata']['name']}-pod-0",
            check=False, timeout=120)  # fmt: skip
    try:
        run("kube", "play", str(play), timeout=300)
        yield Played(container_engine, deployments, own_infra.ports, own_infra.stack.edge_url)
    finally:
        pods = run("pod", "ps", "--format", "{{.Name}}", check=False).stdout.split()
        for pod in pods:
            if any(pod.startswith(d["metadata"]["name"] + "-pod") for d in deployments):
                out = run("pod", "logs", pod, check=False)
                log = tmp / f"{pod}.log"
                log.write_text(out.stdout + out.stderr)
        run("kube", "down", str(play), check=False, timeout=180)
        run("secret", "rm", secret_name, check=False)
        for tag in tags:
            run("untag", image_name(tag.rsplit("/", 1)[-1].split(":")[0]), tag, check=False)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_every_deployment_becomes_ready_as_its_probe_asks(played: Played) -> None:
    pending = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"][
            "httpGet"
        ]["path"]
        for d in played.deployments
    }
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for name, path in list(pending.items()):
            if _ready(f"http://127.0.0.1:{played.ports[name]}{path}"):
                del pending[name]
        time.sleep(0.25)
    assert not pending, f"not ready: {sorted(pending)}"


def test_the_pods_run_as_their_security_context_says(played: Played) -> None:
    listing = played.engine.run("ps", "--pod", "--format", "json").stdout
    for deployment in played.deployments:
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        (found,) = [
            c
            for c in json.loads(listing)
            if c.get("PodName", "").startswith(f"{name}-pod") and not c.get("IsInfra")
        ]
        inspect = json.loads(played.engine.run("inspect", found["Id"]).stdout)[0]
        lines = Path(f"/proc/{inspect['State']['Pid']}/status").read_text().splitlines()
        status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
        assert status["Uid"].split() == [str(spec["securityContext"]["runAsUser"])] * 4, name
        assert int(status["CapEff"], 16) == 0, name
        assert status["NoNewPrivs"] == "1", name
        limit = inspect["HostConfig"]["Memory"]
        expected = container["resources"]["limits"]["memory"]
        unit = {"Mi": 1 << 20, "Gi": 1 << 30}[expected[-2:]]
        assert limit == int(expected[:-2]) * unit, name
        assert inspect["HostConfig"]["ReadonlyRootfs"] is True, name


async def test_an_upload_through_the_edge_reaches_completed_on_the_played_pods(
    played: Played,
) -> None:
    test_every_deployment_becomes_ready_as_its_probe_asks(played)
    async with httpx.AsyncClient(base_url=played.edge_url, timeout=30) as client:
        job = await _upload(client)
    assert await _final_status(played.edge_url, job) == "completed"
