"""bench/engines.py stays runnable: a small run on a broker of its own with the candidates the test environment
has (the raw baseline, the engine doing the frameworks' work and the monitor itself; the frameworks live in
virtualenvs the bench makes, not here). Every candidate listed must have handled every event; the numbers
themselves are measured, never asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# the bench starts and wipes its own broker (the session broker's topics are not fresh): the session port + 930
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 930
EVENTS = 1500


def test_engine_bench_lists_each_candidate_with_every_event() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "engines.py"), "--events", str(EVENTS),
                           "--households", "200", "--port", str(PORT), "--candidates", "raw,engine-core,engine",
                           "--timeout", "300"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("candidate "))
    assert lines[header].split() == ["candidate", "events", "seconds", "events/s", "ratio", "to", "raw"]
    rows = lines[header + 2:header + 5]
    assert rows[0].startswith("raw aiokafka") and rows[0].split()[-1] == "1.000", rows
    assert rows[1].startswith("povwatch engine (2 stages, the frameworks' work)"), rows
    assert rows[2].startswith("povwatch engine (3 stages, every rule)"), rows
    for row in rows:
        assert f"{EVENTS:,}" in row.split() and "FAILED" not in row, row

    result = json.loads((ROOT / "var" / "bench-engines" / "engines.json").read_text())
    assert result["events"] == EVENTS
    by_name = {c["candidate"]: c for c in result["candidates"]}
    assert list(by_name) == ["raw", "engine-core", "engine"]
    assert all(c["ok"] and c["events"] == EVENTS and c["seconds"] > 0 for c in by_name.values())
    assert len(by_name["raw"]["detail"]["runs_s"]) == 3  # one before each other candidate, one at the end
    core = by_name["engine-core"]["detail"]
    # every event decoded and updated once, and the households' counts read back from the state add up
    assert (core["decoded"], core["updated"], core["state_total"]) == (EVENTS, EVENTS, EVENTS)
    assert 100 < core["households"] < EVENTS
    engine = by_name["engine"]["detail"]
    assert (engine["person_processed"], engine["forwarded_to_household"], engine["household_processed"]) \
        == (EVENTS, EVENTS, EVENTS)
    assert engine["alerts"] > 0  # the rules ran: about one stay in ten is over the out-of-pocket threshold
    assert set(engine["stage_done_s"]) == {"person", "household", "village"}
