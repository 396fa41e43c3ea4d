"""bench/connector.py stays runnable: a small run against the session broker, every row read and published in
each of its three stages (the numbers themselves are measured, never asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_connector_bench_runs_every_stage(broker: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "connector.py"), "--rows", "3000", "--bootstrap",
                           broker], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "connector -> Kafka (acked)" in done.stdout and "peak RSS MB" in done.stdout
    result = json.loads((ROOT / "var" / "bench-connector" / "connector.json").read_text())
    assert result["rows"] == 3000
    for stage in ("read", "events", "kafka"):
        got = result["stages"][stage]
        assert got["read"] == 3000 and got.get("published", got.get("valid")) == 3000, stage
        assert got["seconds"] > 0 and got["peak_rss_mb"] > 0
