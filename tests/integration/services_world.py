"""Every long-running povwatch service started as an operator starts it, against the session's real broker and a
SQLite case DB: `start(service, broker, workdir)` returns the child and the port it serves /metrics or /healthz on,
once it answers there; `wait_running` waits until its main loop runs (consuming, polling or serving). Used by the
clean-stop and the dashboard tests."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from plumbing.kafka_io import describe_group, ensure_topics
from plumbing.processes import ChildProcess, scrape
from schemas.errors import BrokerUnavailable
from services.casedb.database import open_database
from tests.integration.ops_world import free_port

SERVICES = ("monitor", "casefeed", "relay", "intake", "desk", "connector-watch")
TOKENS = {"self-declaration": "clean-stop-token-self-0001", "cadre-visit": "clean-stop-token-cadre-0002",
          "social-clue": "clean-stop-token-clue-00003"}


@dataclass
class Running:
    service: str
    child: ChildProcess
    port: int  # /metrics (and /healthz for intake and desk)
    log: Path
    drop: Path | None = None  # connector-watch: its drop folder (feed hospitalization of medical-security)
    group: str | None = None  # the consumer group of a service that consumes (monitor: its person stage's)


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
        time.sleep(0.3)  # sleep-ok: the polling interval of a wait with a deadline
    pytest.fail(f"{' '.join(child.args)} not ready after {timeout:.0f} s:\n{child.tail()}")


def _loop_running(running: Running, broker: str) -> bool:
    """A consumer: its group is Stable with a member (it has joined and polls). The connector's watch: a scan has
    set the drop folder's lag. The intake API and the desk: serving /healthz (checked by `start`) is their loop."""
    if running.group is not None:
        try:
            state, members = asyncio.run(describe_group(broker, running.group))
        except BrokerUnavailable:  # no coordinator yet: a fresh broker is still making __consumer_offsets
            return False
        return state == "Stable" and members >= 1
    if running.service == "connector-watch":
        try:
            samples = scrape(running.port)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return any(name == "povwatch_connector_source_lag_seconds" for name, _ in samples)
    return True


def wait_running(running: Running, broker: str, timeout: float = 90) -> None:
    """Wait until the service's main loop runs: past start-up, where a stop is the loop's to handle."""
    _wait(running.child, lambda: _loop_running(running, broker), timeout)


def start(service: str, broker: str, workdir: Path) -> Running:
    workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(ensure_topics(broker, 3))
    url = f"sqlite:///{workdir / 'cases.db'}"
    open_database(url).close()  # the case DB at its latest schema, as `povwatch cases init` leaves it
    port = free_port()
    run = uuid.uuid4().hex[:8]
    env = {"POVWATCH_BOOTSTRAP": broker, "POVWATCH_CASE_DB": url}
    args: list[str] = [service]
    ready = _metrics_answer(port)
    drop = None
    group = f"it-svc-{run}" if service in ("monitor", "casefeed", "relay") else None
    if service == "monitor":
        env |= {"POVWATCH_MONITOR_METRICS_PORT": str(port), "POVWATCH_MONITOR_APP_ID": f"it-svc-{run}"}
    elif service == "casefeed":
        env |= {"POVWATCH_CASEFEED_METRICS_PORT": str(port), "POVWATCH_CASEFEED_GROUP": f"it-svc-{run}"}
    elif service == "relay":
        env |= {"POVWATCH_RELAY_METRICS_PORT": str(port), "POVWATCH_RELAY_GROUP": f"it-svc-{run}"}
    elif service == "intake":
        env |= {"POVWATCH_INTAKE_PORT": str(port), "POVWATCH_INTAKE_TOKENS": json.dumps(TOKENS)}
        ready = _healthz(port)
    elif service == "desk":
        env |= {"POVWATCH_DESK_PORT": str(port), "POVWATCH_DESK_HOST": "127.0.0.1"}
        ready = _healthz(port)
    elif service == "connector-watch":
        drop = workdir / "drop"
        drop.mkdir()
        config = workdir / "medical-security.toml"
        config.write_text(f'department = "medical-security"\n[service]\nstate = "{workdir / "watch.db"}"\n'
                          f'metrics_port = {port}\nscan_seconds = 0.5\nsettle_seconds = 0.5\n'
                          f'[kafka]\nbootstrap = "{broker}"\n'
                          f'[[folders]]\npath = "{drop}"\nfeed = "hospitalization"\n', encoding="utf-8")
        args = ["connector", "watch", "--config", str(config)]
    else:
        raise ValueError(f"unknown service {service}")
    log = workdir / f"{service}.log"
    child = ChildProcess(args, env=env, log_path=log)
    try:
        _wait(child, ready)
    except BaseException:
        child.kill()
        raise
    return Running(service, child, port, log, drop, group)
