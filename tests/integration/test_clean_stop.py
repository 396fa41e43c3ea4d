"""SIGTERM is a clean stop for every long-running povwatch service (what systemd's `systemctl stop` and Kubernetes
send): each service, started as an operator would start it against the real broker, stops within its unit's
TimeoutStopSec with exit 0 and no traceback. (The units in deploy/systemd/ rely on this: Restart=on-failure must
not restart a service that was asked to stop.)"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.services_world import SERVICES, start, wait_running

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", SERVICES)
def test_sigterm_stops_the_service_cleanly(service: str, broker: str, tmp_path: Path) -> None:
    running = start(service, broker, tmp_path)
    try:
        wait_running(running, broker)  # past start-up: the loop is running (consuming, polling or serving)
        started = time.monotonic()
        code = running.child.stop(timeout=55)  # the units give 60 s (TimeoutStopSec) before SIGKILL
        took = time.monotonic() - started
    finally:
        running.child.kill()
    log = running.log.read_text(errors="replace")
    assert code == 0, f"{service} exited {code} on SIGTERM:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
    assert took < 30, f"{service} took {took:.1f} s to stop"
