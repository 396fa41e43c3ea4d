"""Comparison requests, answers and the outbox on the real PostgreSQL of `scripts/postgres.sh`: the tests of
tests/compare_behaviour.py, also run on SQLite by tests/unit/test_compare.py.

The checkout has one cluster; when it is already running (another session started it) it is used on its port,
else it is started on POVWATCH_PG_PORT (default 15792 here) and stopped at the end. The tests work in a schema of
their own (`povwatch_compare`, through the connection's search_path), dropped and recreated for every test, so they
never touch the tables of another test session using the same database.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from services.casedb.database import open_database
from services.casedb.store import CaseStore

pytest.register_assert_rewrite("tests.compare_behaviour")

from tests.compare_behaviour import (  # noqa: E402, F401
    test_a_request_for_a_case_stores_its_targets_and_its_outbox_message,
    test_all_monitored_takes_the_users_region,
    test_answers_are_stored_once_and_make_a_request_partly_then_fully_answered,
    test_outbox_rows_are_marked_published_in_order,
    test_who_may_ask_and_about_what,
)

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
SCHEMA = "povwatch_compare"


def _script(command: str, port: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "POVWATCH_PG_PORT": port})


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    port = os.environ.get("POVWATCH_PG_PORT", "15792")
    status = _script("status", port, 60)
    running = re.search(r"running on 127\.0\.0\.1:(\d+)", status.stdout) if status.returncode == 0 else None
    if running:
        port = running.group(1)
    started = _script("start", port, 600)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith("postgresql+psycopg://"):
        pytest.fail(f"scripts/postgres.sh start failed (exit {started.returncode})\n{started.stdout}{started.stderr}",
                    pytrace=False)
    try:
        yield lines[-1]
    finally:
        if not running:
            stopped = _script("stop", port, 120)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture
def store(pg_url: str) -> Iterator[CaseStore]:
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    finally:
        engine.dispose()
    s = open_database(f"{pg_url}?options=-csearch_path%3D{SCHEMA}")
    assert s.engine.dialect.name == "postgresql"
    with s.engine.connect() as conn:
        assert conn.scalar(text("SELECT current_schema()")) == SCHEMA
    yield s
    s.close()
