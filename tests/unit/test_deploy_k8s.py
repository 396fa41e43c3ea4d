"""deploy/k8s/: the povwatch services' manifests validate against Kubernetes' own OpenAPI schemas (strict: an unknown
field fails; the schemas kubernetes-validate ships), probe /healthz or /metrics on the port the service really
serves, run real povwatch commands with real settings, and the Strimzi resources cover every topic povwatch uses."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from plumbing.settings import Settings
from schemas.catalog import project_topics
from services.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.30.0"
SERVICES = {"monitor": ("/metrics", 9464), "casefeed": ("/metrics", 9465), "relay": ("/metrics", 9467),
            "intake": ("/healthz", 8088), "desk": ("/healthz", 8089)}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _all() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) for d in _documents(p)]


def _core(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in docs if not d["apiVersion"].startswith("kafka.strimzi.io/")]


@pytest.mark.parametrize("name,doc", _core(_all()), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_validates_against_kubernetes_schemas(name: str, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{name} {doc['kind']}: {exc.message} at {list(exc.path)}")


def test_the_validation_is_not_vacuous() -> None:
    deployment = next(d for _, d in _all() if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_probes_what_it_serves_and_runs_a_real_command(service: str) -> None:
    docs = _documents(K8S / f"{service}.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 30  # time to finish and commit the batch in flight
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    build_parser().parse_args(container["args"])
    path, port = SERVICES[service]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert str(port) in env.values()
    for key in env:
        assert key.removeprefix("POVWATCH_").lower() in Settings.model_fields, key
    assert container["ports"][0]["containerPort"] == port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e} == {"povwatch-settings"}
    assert {e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e} == {"povwatch-secrets"}


def test_config_and_secret_name_only_real_settings() -> None:
    for _, doc in _all():
        if doc["kind"] in ("ConfigMap", "Secret"):
            for key in doc.get("data") or doc.get("stringData"):
                assert key.removeprefix("POVWATCH_").lower() in Settings.model_fields, key


def test_strimzi_cluster_and_a_topic_for_every_povwatch_topic() -> None:
    strimzi = [d for _, d in _all() if d["apiVersion"] == "kafka.strimzi.io/v1beta2"]
    kafka = next(d for d in strimzi if d["kind"] == "Kafka")
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    pool = next(d for d in strimzi if d["kind"] == "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"} and pool["spec"]["replicas"] == 3
    topics = {d["spec"]["topicName"]: d for d in strimzi if d["kind"] == "KafkaTopic"}
    assert set(topics) == {spec.name for spec in project_topics()}
    for spec in project_topics():
        topic = topics[spec.name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert (topic["spec"]["config"].get("cleanup.policy") == "compact") == spec.compacted, spec.name
    config = next(d for _, d in _all() if d["kind"] == "ConfigMap")
    assert config["data"]["POVWATCH_BOOTSTRAP"].startswith(f"{kafka['metadata']['name']}-kafka-bootstrap.")


def test_kafka_topics_file_is_current() -> None:
    spec = importlib.util.spec_from_file_location("povwatch_k8s_topics", K8S / "topics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert (K8S / "kafka-topics.yaml").read_text(encoding="utf-8") == module.render(), \
        "deploy/k8s/kafka-topics.yaml is stale: run `python deploy/k8s/topics.py`"
    config = next(d for _, d in _all() if d["kind"] == "ConfigMap")
    assert int(config["data"]["POVWATCH_PARTITIONS"]) == module.PARTITIONS
