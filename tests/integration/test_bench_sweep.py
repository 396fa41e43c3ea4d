"""bench/sweep.py stays runnable: a small year (about 900 persons, a tenth of the volumes, every feed of the
catalogue with realistic values, every department's connector process running its files through one producer)
from the files to the last alert in the case DB, on a broker of its own (the session port + 980; the controller,
monitor and case feed take the next three). Counts are asserted exactly; the timings and memory only as sanity
(the figures are in docs/scaling.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.catalog import EVENT_FEEDS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 980


def test_a_small_year_end_sweep_reaches_the_case_db_exactly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "sweep.py"), "--persons", "900", "--scale", "0.1",
                           "--port", str(PORT), "--work", str(tmp_path / "sweep"), "--parallel", "6"],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "sweep" / "sweep.json").read_text())

    # every feed's files, every row accounted for: read = published + rejected, rejected = the bad rows written
    assert {(p["department"], p["feed"]) for p in result["plans"]} == set(EVENT_FEEDS)
    assert result["count_problems"] == []
    assert result["published"] == result["rows"] - result["bad_rows"] > 0
    # realistic values: a few risky rows among benign ones (bench/year.py PROFILES), far from the demo's one in two
    assert 0 < result["risky_rows"] < 0.1 * result["rows"]
    assert not result["per_file"] and all(c["files"] >= 1 for c in result["connectors"].values())
    assert sum(c["files"] for c in result["connectors"].values()) == result["files"]
    assert len(result["connectors"]) == len({dep for dep, _ in EVENT_FEEDS})
    # every alert published is in the case DB, once
    alerts = result["alerts"]
    assert alerts["distinct"] == alerts["case_db_evidence"] > 0
    assert alerts["messages"] >= alerts["distinct"]
    assert alerts["distinct"] < 0.3 * result["published"]  # the demo's generator gave 0.46 alert messages an event
    assert result["monitor"]["unmatched"] == 0 and result["monitor"]["pending"] == 0

    # sanity only: phases in order, every process measured
    s = result["seconds"]
    assert 0 < s["roster"] < s["drained"] <= s["case_db"] and s["connectors"] > 0
    for name in ("monitor", "casefeed", "broker (Kafka)", "roster load"):
        assert result["processes"][name]["peak_rss_mb"] > 10, name
    assert all(c["peak_rss_mb"] > 10 and c["cpu_s"] > 0 for c in result["connectors"].values())
    assert 0 < result["machine"]["busy_cores"] <= result["machine"]["cores"] + 0.1
    assert "bound:" in done.stdout and "-> exact" in done.stdout
