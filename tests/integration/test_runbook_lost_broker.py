"""Procedure "Recover from a lost broker" (docs/runbook.md), on a broker of this module's own: the single-host
broker is killed and its data directory lost; the documented recovery (a new broker, the topics, the roster and
the departments' files sent again, the case decisions queued again, the monitor and the case feed started) brings
back every event and every alert under its old id, and the case DB gains nothing twice. Counted exactly."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plumbing.settings import Settings
from schemas.topics import ALERTS_HOUSEHOLD
from services.casedb.database import open_database
from tests.integration.ops_world import World, free_port, households, roster_file, stays_file
from tests.integration.runbook_world import prefix_cases, run_casefeed_once, status_json, topic_messages

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 360  # killed and wiped: a broker of its own
HOSPITALIZATION = "events.medical-security.hospitalization"


def _kill_broker(data: Path) -> None:
    pid = int((data / "broker.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        assert time.monotonic() < deadline, "the broker did not die"
        time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def _every_case(url: str) -> list[tuple[object, ...]]:
    """Every case (households' and villages'): subject, status, severity and its alert ids."""
    with open_database(url) as store:
        return sorted((c.id, c.household_or_region, c.status, c.max_severity,
                       tuple(sorted(e.alert_id for e in c.evidence))) for c in store.list_cases())


def test_a_lost_broker_is_rebuilt_from_the_sources(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    world = World(Settings(bootstrap=f"127.0.0.1:{PORT}", kafka_data=data), tmp_path)
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    env = {"POVWATCH_CASE_DB": db, "POVWATCH_MONITOR_APP_ID": "povwatch-monitor",
           "POVWATCH_CASEFEED_GROUP": "povwatch-casefeed", "POVWATCH_RELAY_GROUP": "povwatch-relay",
           "POVWATCH_RELAY_METRICS_PORT": str(free_port())}
    world.env |= env
    world.cli("kafka", "up")
    try:
        world.cli("topics", "ensure")
        hhs = households("LOST", 60)
        roster = roster_file(tmp_path / "roster.csv", hhs)
        heads = [h.members[0] for h in hhs]
        files = [stays_file(tmp_path / "stays-jan.csv", heads),
                 stays_file(tmp_path / "stays-feb.csv", heads[:20], first=dt.date(2025, 2, 1))]
        world.roster(roster, delta=False)
        for f in files:
            world.publish("medical-security", "hospitalization", f)
        monitor, _ = world.monitor("povwatch-monitor", "lost-monitor-1")
        before = {a["alert_id"] for a in world.wait_alerts("LOST", 80, timeout=180, alive=lambda: monitor.alive)}
        assert len(before) == 80
        assert monitor.stop() == 0
        first = run_casefeed_once(world, env)
        cases_before = prefix_cases(db, "LOST")
        every_case_before = _every_case(db)
        assert cases_before[:2] == (60, 80)
        events_before = topic_messages(status_json(world, env), HOSPITALIZATION)
        assert events_before == 80

        # the loss: the broker killed, its data directory gone
        _kill_broker(data)
        shutil.rmtree(data)
        gone = subprocess.run([sys.executable, "-m", "services.cli", "status"], env={**os.environ, **world.env},
                              capture_output=True, text=True, timeout=120)
        assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1, gone.stderr

        # the recovery, step by step as docs/runbook.md gives it
        world.cli("kafka", "up")
        world.cli("topics", "ensure")
        world.roster(roster, delta=False)
        for f in files:
            world.publish("medical-security", "hospitalization", f)
        world.cli("cases", "publish-status")
        started = time.monotonic()
        assert "relay: published 0" in world.cli("relay", "--once")  # no case was decided: nothing to send
        print(f"relay --once took {time.monotonic() - started:.1f} s")
        monitor, _ = world.monitor("povwatch-monitor", "lost-monitor-2")
        after = world.wait_alerts("LOST", 80, timeout=180, alive=lambda: monitor.alive)
        assert monitor.stop() == 0
        assert {a["alert_id"] for a in after} == before and len(after) == 80  # each once, under its old id
        status = status_json(world, env)
        assert topic_messages(status, HOSPITALIZATION) == events_before
        assert topic_messages(status, ALERTS_HOUSEHOLD) == 80
        again = run_casefeed_once(world, env)
        assert (again["consumed"], again["cases_opened"], again["dead_letters"]) == (first["consumed"], 0, 0)
        # household alerts are duplicates; a regional alert raised again as its village's count grew merges
        # what it names into the same alert ("updated"): either way nothing new
        assert again["duplicates"] + again["updated"] == first["consumed"] and again["duplicates"] >= 80
        assert prefix_cases(db, "LOST") == cases_before
        assert _every_case(db) == every_case_before
    finally:
        world.stop_all()
        world.cli("kafka", "down")
