"""The SQL source on the real PostgreSQL server of scripts/postgres.sh (the behaviour shared with SQLite:
tests/sql_source_behaviour.py), on its own port (POVWATCH_PG_PORT, default here 15492) and stopped at the end
unless it was running before, as tests/integration/test_casedb_postgres.py does. Never skipped."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sql_source_behaviour import check_incremental_polling

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
ENV = {**os.environ, "POVWATCH_PG_PORT": os.environ.get("POVWATCH_PG_PORT", "15492")}


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=ENV)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/postgres.sh {command} did not finish within {timeout:.0f} s", pytrace=False)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    was_running = _script("status", 60).returncode == 0
    started = _script("start", 600)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith("postgresql+psycopg://"):
        pytest.fail(f"scripts/postgres.sh start failed (exit {started.returncode})\n"
                    f"--- stdout\n{started.stdout}--- stderr\n{started.stderr}", pytrace=False)
    try:
        yield lines[-1]
    finally:
        if not was_running:
            stopped = _script("stop", 120)
            assert stopped.returncode == 0, f"scripts/postgres.sh stop failed:\n{stopped.stdout}{stopped.stderr}"


def test_incremental_polling_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    check_incremental_polling(pg_url, tmp_path)
