"""deploy/compose/: the whole hub as a Compose file. Checked against the Compose specification's JSON schema (the copy
check-jsonschema ships), by `docker compose config` where Docker's compose plugin exists, and for what a schema
cannot see: every povwatch service runs a real povwatch command with real settings, has a health check and starts
after the broker; every file it mounts exists; its Prometheus configuration passes promtool."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from plumbing.settings import Settings
from services.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
POVWATCH_SERVICES = {"topics", "monitor", "casefeed", "relay", "intake", "desk"}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_file_matches_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_is_not_vacuous(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["monitor"]["healthcheck"]["retries"] = "often"
    broken["services"]["desk"]["restartt"] = "always"
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "restartt" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("docker") is None
                    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
                    reason="Docker's compose plugin is not installed here; the schema check above stands in")
def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    compose_dir = tmp_path / "deploy" / "compose"
    shutil.copy(compose_dir / "povwatch.env.example", compose_dir / "povwatch.env")
    done = subprocess.run(["docker", "compose", "-f", str(compose_dir / "compose.yaml"), "config", "-q"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "POVWATCH_DB_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"})
    assert done.returncode == 0, done.stderr


def test_the_hub_is_all_there() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "prometheus", "grafana"} | POVWATCH_SERVICES == set(services)


@pytest.mark.parametrize("name", sorted(POVWATCH_SERVICES))
def test_povwatch_services_run_real_commands_with_real_settings(name: str) -> None:
    service = _compose()["services"][name]
    assert service["image"] == "povwatch:latest"
    build_parser().parse_args(service["command"])  # SystemExit(2) on an unknown command
    fields = Settings.model_fields
    for key in service["environment"]:
        assert key.startswith("POVWATCH_") and key.removeprefix("POVWATCH_").lower() in fields, key
    for line in (COMPOSE_DIR / "povwatch.env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key = line.split("=", 1)[0]
            assert key.removeprefix("POVWATCH_").lower() in fields, key
    depends = service["depends_on"]
    if name != "desk":  # the desk reads and writes the case DB only
        assert depends["kafka"]["condition"] == "service_healthy"
    if name not in ("topics", "desk"):
        assert depends["topics"]["condition"] == "service_completed_successfully"
    if name != "topics":
        assert service["stop_signal"] == "SIGTERM" and service["stop_grace_period"] == "60s"
        probe = service["healthcheck"]["test"]
        port = service["environment"].get(f"POVWATCH_{name.upper()}_PORT") or \
            service["environment"][f"POVWATCH_{name.upper()}_METRICS_PORT"]
        path = "/healthz" if name in ("intake", "desk") else "/metrics"
        assert f"http://127.0.0.1:{port}{path}" in " ".join(probe), probe
    if name in ("casefeed", "relay", "desk"):
        assert depends["postgres"]["condition"] == "service_healthy"


def test_every_service_has_a_health_check() -> None:
    for name, service in _compose()["services"].items():
        if name != "topics":  # a one-shot job: its exit code is its health
            assert service.get("healthcheck", {}).get("test"), name


def test_mounted_files_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"
    build = _compose()["services"]["monitor"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/setup.sh (deploy/install-promtool.sh)"
    shutil.copy(COMPOSE_DIR / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "deploy" / "prometheus" / "rules", tmp_path / "rules")  # mounted so in compose.yaml
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {job["job_name"] for job in yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())["scrape_configs"]}
    host_jobs = {job["job_name"] for job in
                 yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]}
    assert jobs == host_jobs - {"povwatch-connector"}  # the alert rules name these jobs


def test_dockerfile_installs_the_packages_the_services_need() -> None:
    text = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    for package in ("schemas", "connectors", "services"):
        assert f"COPY {package} ./{package}" in text
    assert "USER povwatch" in text
    assert shlex.split(text.split("ENTRYPOINT", 1)[1].strip())[0].strip('[]",') == "povwatch"
