"""bench/latency.py stays runnable and honest: a small run on a broker of its own (the session broker's port + 950;
its controller, the monitor's and the case feed's /metrics take the next three ports). Every offered event must
have reached exactly one alert and one case, in every phase; the table has its shape; the percentiles are
ordered. The latencies themselves are measured, never asserted beyond sanity (docs/benchmarks.md has figures)."""
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
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 950
MIN_EVENTS, BURST, WARMUP = 60, 300, 10


def test_latency_bench_every_event_reaches_an_alert_and_a_case() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "latency.py"), "--seconds", "1", "--min-events",
                           str(MIN_EVENTS), "--burst", str(BURST), "--warmup", str(WARMUP), "--households", "200",
                           "--port", str(PORT)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("offered "))
    assert [cell.strip() for cell in lines[header].split("  ") if cell.strip()] == [
        "offered", "events/s", "events", "alerts", "cases", "ingest->alert p50/p95/p99 ms",
        "alert->case p50/p95/p99 ms", "Kafka p50/p95/p99 ms", "p99 / Kafka p99"]
    rows = lines[header + 2:header + 5]
    assert [row.split()[0] for row in rows] == ["10%", "50%", "90%"], rows
    assert any(line.startswith("aim at 50 %: p99 ingest->alert ") for line in lines)

    result = json.loads((ROOT / "var" / "bench-latency" / "latency.json").read_text())
    assert result["problems"] == []
    burst = result["burst"]
    assert burst["events"] == BURST
    # the maximum is the whole path's: no faster than the connector published, nor than alerts were raised
    assert 0 < result["max_rate"] <= burst["alerts_per_s"] * 1.001
    assert result["max_rate"] <= burst["published_per_s"] * 1.001
    assert [p["fraction"] for p in result["phases"]] == [0.1, 0.5, 0.9]
    for phase in result["phases"]:
        assert phase["target_rate"] == pytest.approx(phase["fraction"] * result["max_rate"])
        expected = max(MIN_EVENTS, math.ceil(phase["target_rate"] * 1))  # --seconds 1
        # counts exact: every event offered reached one alert and one case; the probe read every message
        assert phase["events"] == phase["alerts"] == phase["cases"] == expected, phase
        assert phase["kafka"]["count"] == expected
        for figures in ("ingest_to_alert", "ingest_to_forward", "forward_to_alert", "alert_to_case", "kafka"):
            got = phase[figures]
            assert got["count"] == expected, (figures, got)
            assert got["p50"] <= got["p95"] <= got["p99"] <= got["max"], (figures, got)
        # causality on one machine's clock (record timestamps are whole milliseconds): nothing before its cause
        assert phase["ingest_to_forward"]["p50"] >= -1 and phase["forward_to_alert"]["p50"] >= -1
        assert phase["alert_to_case"]["p50"] >= -1 and phase["kafka"]["p50"] >= -1
        # sanity, not a target: an event of a paced phase on an idle pipeline is judged within a minute
        assert phase["ingest_to_alert"]["max"] < 60_000
        # the paced connector offered about the rate asked (the last send may lag on a loaded machine)
        assert phase["offered_rate"] <= phase["target_rate"] * 1.5 + 1
