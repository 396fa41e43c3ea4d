"""bench/pipeline.py stays runnable: the mixed workload (rows of every feed, every rule on) drained by a monitor of
two worker processes over 4 partitions, on a broker of its own (the session port + 998; the controller takes
+ 999). Only sanity is asserted (the figures are in docs/benchmarks.md): every event judged by the workers
together, both workers' readiness timed, the raw consume-and-decode measured in the same run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 998


def test_pipeline_bench_drains_the_mixed_workload_with_two_workers(tmp_path: Path) -> None:
    work = tmp_path / "bench"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pipeline.py"), "--workload", "mixed", "--events",
                           "1500", "--households", "200", "--workers", "2", "--partitions", "4", "--port", str(PORT),
                           "--work", str(work)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((work / "pipeline.json").read_text())
    assert result["workers"] == 2 and result["partitions"] == 4 and result["feeds"] >= 20
    assert result["events"] > 1000 and result["monitor"]["events_unmatched"] == 0
    assert result["monitor"]["alerts"] > 0 and len(result["alerts_by_rule"]) > 5
    seconds = result["seconds"]
    # so few events can be judged before the bench sees the first worker ready: the drain is not asserted here
    assert 0 < seconds["ready"] <= seconds["all_ready"] and seconds["start_to_drained"] > 0
    assert seconds["raw_events"] > 0 and result["monitor_cpu_s_during_drain"] is not None
    assert (work / "monitor.log").exists() and (work / "monitor-2.log").exists()  # both workers ran
    assert "2 worker(s) on 4 partitions per topic" in done.stdout and "ratio to raw" in done.stdout
