"""`povwatch roster load FILE` loads the bureau's export once, on the session broker: the topics, and the case DB's
households and members when a case DB is configured; otherwise (none configured, or unreachable) one line on
stderr saying why and how to do it later, the topics published all the same, and the exit code saying which."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from plumbing.kafka_io import ensure_topics, read_compacted
from schemas.topics import REGISTRY_HOUSEHOLDS
from services.casedb.database import open_database
from services.casedb.models import Member
from tests.integration.ops_world import households, roster_file

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def topics(broker: str) -> None:
    asyncio.run(ensure_topics(broker, 3))


def _load(broker: str, roster: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "POVWATCH_CASE_DB"}
    return subprocess.run([sys.executable, "-m", "services.cli", "roster", "load", str(roster), "--delta"],
                          env={**base, "POVWATCH_BOOTSTRAP": broker, "PYTHONPATH": str(Path.cwd()), **env},
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def _on_topic(broker: str, hid: str) -> bool:
    return hid.encode() in asyncio.run(read_compacted(broker, REGISTRY_HOUSEHOLDS))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines(stderr: str) -> list[str]:
    """povwatch's own lines on stderr (not the development key's warning, nor aiokafka's log of a new topic)."""
    return [line for line in stderr.splitlines()
            if line.startswith("povwatch:") and "DEVELOPMENT pseudonymisation key" not in line]


def test_roster_load_fills_a_configured_case_db(broker: str, tmp_path: Path) -> None:
    [household] = households(f"RCD{uuid.uuid4().hex[:8]}", 1, members=3)
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    done = _load(broker, roster_file(tmp_path / "roster.csv", [household]), tmp_path, POVWATCH_CASE_DB=db)
    assert done.returncode == 0 and _lines(done.stderr) == [], done.stderr
    assert ("case DB refreshed: households added 1  updated 0  unchanged 0; members added 3  updated 0  unchanged 0"
            in done.stdout)
    store = open_database(db)
    try:
        with Session(store.engine) as session:
            names = sorted(m.name for m in session.scalars(select(Member)).all())
    finally:
        store.close()
    assert names == ["测试丙", "测试乙", "测试甲"]
    assert _on_topic(broker, household.hid)


def test_roster_load_without_a_case_db_says_so_and_publishes(broker: str, tmp_path: Path) -> None:
    [household] = households(f"RCN{uuid.uuid4().hex[:8]}", 1)
    roster = roster_file(tmp_path / "roster.csv", [household])
    done = _load(broker, roster, tmp_path)  # no POVWATCH_CASE_DB, no var/povwatch.db in the working directory
    assert done.returncode == 0, done.stderr
    assert _lines(done.stderr) == [f"povwatch: case DB not refreshed: no case DB configured (POVWATCH_CASE_DB); "
                                   f"run `povwatch cases roster {roster}` where the case DB is reachable"]
    assert not (tmp_path / "var" / "povwatch.db").exists()  # (var/run/ holds the audit instance's claim)
    assert _on_topic(broker, household.hid)


def test_roster_load_with_an_unreachable_case_db_publishes_and_exits_3(broker: str, tmp_path: Path) -> None:
    [household] = households(f"RCU{uuid.uuid4().hex[:8]}", 1)
    roster = roster_file(tmp_path / "roster.csv", [household])
    done = _load(broker, roster, tmp_path, POVWATCH_CASE_DB=f"postgresql://u:pw@127.0.0.1:{_closed_port()}/cases")
    assert done.returncode == 3, done.stderr
    [line] = _lines(done.stderr)
    assert line.startswith("povwatch: case DB not refreshed: case database unreachable at ") and "Traceback" not in line
    assert line.endswith(f"run `povwatch cases roster {roster}` where the case DB is reachable")
    assert "read 2" in done.stdout  # the topics' summary as usual
    assert _on_topic(broker, household.hid)
