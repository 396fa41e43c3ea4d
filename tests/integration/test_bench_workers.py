"""bench/workers.py stays runnable: 1 and 2 monitor workers of one consumer group on a small backlog of every feed
over 12 partitions, and the memory of a ready worker in both stores before and after 20,000 synthetic registry
persons, on a broker of its own (the session port + 985; the controller and the workers' /metrics take the next
ones). Numbers are asserted only as sanity (the figures are in docs/scaling.md)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 985


def test_workers_bench_drains_with_one_and_two_workers_and_measures_memory(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "workers.py"), "--events", "1500", "--households",
                           "200", "--workers", "1,2", "--persons", "20000", "--port", str(PORT),
                           "--work", str(tmp_path / "workers")],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "workers" / "workers.json").read_text())
    assert result["partitions"] == 12 and result["events"] > 1000
    assert [r["workers"] for r in result["runs"]] == [1, 2]
    for run in result["runs"]:
        assert len(run["cpu_s"]) == run["workers"] and all(c is not None and c > 0 for c in run["cpu_s"])
        assert 0 < run["ready_s"] < run["drained_s"] and run["events_per_s_from_start"] > 0
    assert all(run["alerts"] > 0 for run in result["runs"])
    memory = result["memory"]
    for store in ("memory", "rocksdb"):
        small, big = memory[f"{store}_small"], memory[f"{store}_big"]
        assert big["registry_persons"] - small["registry_persons"] == 20_000
        assert small["rss_mb"] > 10 and big["rss_mb"] > 10
        assert math.isfinite(result["mb_per_million"][store])
    assert "MB per 1,000,000 persons" in done.stdout and "store rule:" in done.stdout
