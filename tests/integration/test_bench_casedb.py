"""bench/casedb.py stays runnable: a small run on SQLite, this checkout's code only, every alert message accounted
for and the roster imported whole (the numbers themselves are measured, never asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_casedb_bench_times_the_roster_import_and_the_case_feed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "casedb.py"), "--persons", "900", "--alerts", "400",
                           "--batch", "50", "--backends", "sqlite", "--baseline", "", "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "roster import again" in done.stdout and "case feed (400 alerts)" in done.stdout
    [result] = json.loads((tmp_path / "casedb.json").read_text())["results"]
    roster, feed = result["roster"], result["feed"]
    assert roster["persons"] > 800 and roster["households"] > 200 and roster["import_cpu"] > 0
    assert feed["new"] + feed["duplicate"] + feed["updated"] == feed["alerts"] == 400
    assert feed["evidence"] == feed["new"] and feed["duplicate"] > 0 and feed["updated"] > 0
