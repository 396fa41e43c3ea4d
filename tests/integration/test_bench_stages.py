"""bench/stages.py stays runnable: a small run of the monitor's three handlers in one process, every event through
the person stage, every joined one through the household stage. The figures are measured, never asserted."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_stage_bench_times_every_stage_over_the_whole_workload() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "stages.py"), "--events", "600", "--households",
                           "200", "--batch", "250", "--repeat", "1"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    events = int(lines[0].split()[0].replace(",", ""))
    assert events > 500 and "of 25 topics" in lines[0], lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    stages = [line.split("  ")[0].strip() for line in lines[header + 2:header + 9]]
    assert stages == ["raw decode", "person", "household", "household profiles", "household changelog", "village",
                      "monitor (three stages)"]
    counts = lines[header + 9]
    # every event of a roster person reaches the household stage (the mixed rows name roster persons, or the
    # household alone; the village-level rows go to the village stage), and the rules raised alerts
    joined = int(counts.split("household stage in ")[1].split(",")[0])
    village = int(counts.split("village stage in ")[1].split(",")[0])
    assert 0.8 * events < joined <= events and village > 0, counts
    assert int(counts.split("alerts ")[1].split(",")[0]) > 0, counts
