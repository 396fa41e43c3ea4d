"""SIGTERM is a clean stop for every long-running povwatch service (what systemd's `systemctl stop` and Kubernetes
send): each service, started as an operator would start it against the real broker, stops within its unit's
TimeoutStopSec with exit 0 and no traceback. (The units in deploy/systemd/ rely on this: Restart=on-failure must
not restart a service that was asked to stop.)"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from services.casefeed.db import open_database
from services.kafka_io import ensure_topics
from services.processes import ChildProcess, scrape
from tests.integration.ops_world import free_port

pytestmark = pytest.mark.integration

TOKENS = {"self-declaration": "clean-stop-token-self-0001", "cadre-visit": "clean-stop-token-cadre-0002",
          "social-clue": "clean-stop-token-clue-00003"}


def _metrics_answer(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return bool(scrape(port))
        except (urllib.error.URLError, OSError, ValueError):
            return False
    return ready


def _healthz(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
    return ready


def _wait(child: ChildProcess, ready: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.alive, f"{' '.join(child.args)} exited ({child.proc.returncode}):\n{child.tail()}"
        if ready():
            return
        time.sleep(0.3)
    pytest.fail(f"{' '.join(child.args)} not ready after {timeout:.0f} s:\n{child.tail()}")


SERVICES = ["monitor", "casefeed", "relay", "intake", "desk", "connector-watch"]


@pytest.mark.parametrize("service", SERVICES)
def test_sigterm_stops_the_service_cleanly(service: str, broker: str, tmp_path: Path) -> None:
    asyncio.run(ensure_topics(broker, 3))
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    open_database(url).close()  # the case DB at its latest schema, as `povwatch cases init` leaves it
    port = free_port()
    run = uuid.uuid4().hex[:8]
    env = {"POVWATCH_BOOTSTRAP": broker, "POVWATCH_CASE_DB": url}
    args: list[str] = [service]
    ready = _metrics_answer(port)
    if service == "monitor":
        env |= {"POVWATCH_MONITOR_METRICS_PORT": str(port), "POVWATCH_MONITOR_APP_ID": f"it-stop-{run}"}
    elif service == "casefeed":
        env |= {"POVWATCH_CASEFEED_METRICS_PORT": str(port), "POVWATCH_CASEFEED_GROUP": f"it-stop-{run}"}
    elif service == "relay":
        env |= {"POVWATCH_RELAY_METRICS_PORT": str(port), "POVWATCH_RELAY_GROUP": f"it-stop-{run}"}
    elif service == "intake":
        env |= {"POVWATCH_INTAKE_PORT": str(port), "POVWATCH_INTAKE_TOKENS": json.dumps(TOKENS)}
        ready = _healthz(port)
    elif service == "desk":
        env |= {"POVWATCH_DESK_PORT": str(port), "POVWATCH_DESK_HOST": "127.0.0.1"}
        ready = _healthz(port)
    else:
        drop = tmp_path / "drop"
        drop.mkdir()
        config = tmp_path / "medical-security.toml"
        config.write_text(f'department = "medical-security"\n[service]\nstate = "{tmp_path / "watch.db"}"\n'
                          f'metrics_port = {port}\nscan_seconds = 0.5\n[kafka]\nbootstrap = "{broker}"\n'
                          f'[[folders]]\npath = "{drop}"\nfeed = "hospitalization"\n', encoding="utf-8")
        args = ["connector", "watch", "--config", str(config)]
    child = ChildProcess(args, env=env, log_path=tmp_path / f"{service}.log")
    try:
        _wait(child, ready)
        time.sleep(1.0)  # past start-up: the loop is running (consuming, polling or serving)
        started = time.monotonic()
        code = child.stop(timeout=55)  # the units give 60 s (TimeoutStopSec) before SIGKILL
        took = time.monotonic() - started
    finally:
        child.kill()
    log = (tmp_path / f"{service}.log").read_text(errors="replace")
    assert code == 0, f"{service} exited {code} on SIGTERM:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
    assert took < 30, f"{service} took {took:.1f} s to stop"
