"""The desk's sessions across real processes (issue #13 item 6): two `povwatch desk` processes on one SQLite case DB
and one secret (replicas behind one address), then a third started after the first two stopped (a restart).
A session logged in on one replica is honoured by the other; logged out on the other, the copied cookie is refused
by the first; after the restart the stolen cookie stays refused. And the start-up refusal of insecure cookies on a
non-loopback address, as the process prints it.

Ports: POVWATCH_TEST_BROKER_PORT + 961..964 (docs/testing.md).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plumbing.processes import ChildProcess
from services.casedb.database import open_database
from tests.desk_world import PASSWORD, prepare
from tests.integration.test_desk_browser import ROOT, SECRET, _wait_ready

pytestmark = pytest.mark.integration

BASE = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 961
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def case_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    store = open_database(url)
    try:
        prepare(store, tmp_path)
    finally:
        store.close()
    return url


def _desk(url: str, port: int, log: Path) -> ChildProcess:
    child = ChildProcess(["desk"], env={"POVWATCH_CASE_DB": url, "POVWATCH_DESK_PORT": str(port),
                                       "POVWATCH_DESK_HOST": "127.0.0.1", "POVWATCH_DESK_SECRET": SECRET,
                                       "POVWATCH_DESK_INSECURE_COOKIES": "1"}, log_path=log)
    _wait_ready(port, child)
    return child


@pytest.fixture
def replicas(case_db: str, tmp_path: Path) -> Iterator[list[ChildProcess]]:
    started: list[ChildProcess] = []
    try:
        started += [_desk(case_db, BASE, tmp_path / "a.log"), _desk(case_db, BASE + 1, tmp_path / "b.log")]
        yield started
    finally:
        for child in started:
            if child.alive:
                assert child.stop() == 0, child.tail(20)


def _csrf(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def test_a_session_ends_on_every_replica_and_stays_ended_after_a_restart(
        replicas: list[ChildProcess], case_db: str, tmp_path: Path) -> None:
    a = httpx.Client(base_url=f"http://127.0.0.1:{BASE}", timeout=30)
    b = httpx.Client(base_url=f"http://127.0.0.1:{BASE + 1}", timeout=30)
    answer = a.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": _csrf(a.get("/login"))})
    assert answer.status_code == 303
    stolen = dict(a.cookies)
    b.cookies.update(stolen)
    page = b.get("/cases")
    assert page.status_code == 200  # one session, honoured by the other replica
    assert b.post("/logout", data={"csrf": _csrf(page)}).status_code == 303
    assert a.get("/cases").status_code == 303  # logged out on B: refused on A at once
    for child in replicas:
        assert child.stop() == 0
    restarted = _desk(case_db, BASE + 2, tmp_path / "c.log")
    try:
        thief = httpx.Client(base_url=f"http://127.0.0.1:{BASE + 2}", timeout=30, cookies=stolen)
        assert thief.get("/cases").status_code == 303
        fresh = httpx.Client(base_url=f"http://127.0.0.1:{BASE + 2}", timeout=30)
        fresh.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": _csrf(fresh.get("/login"))})
        assert fresh.get("/cases").status_code == 200  # the real user logs in again
    finally:
        assert restarted.stop() == 0


def test_insecure_cookies_off_loopback_are_refused_at_start_up(case_db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POVWATCH_")}
    env.update(POVWATCH_CASE_DB=case_db, POVWATCH_DESK_PORT=str(BASE + 3), POVWATCH_DESK_HOST="0.0.0.0",
               POVWATCH_DESK_SECRET=SECRET, POVWATCH_DESK_INSECURE_COOKIES="1")
    done = subprocess.run([sys.executable, "-m", "services.cli", "desk"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("povwatch: error: POVWATCH_DESK_INSECURE_COOKIES=1 is for a desk on this machine only")
