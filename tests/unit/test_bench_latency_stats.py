"""bench/latency_stats.py: nearest-rank percentiles, and the join of events to their alerts and cases that
bench/latency.py counts and times (what did not match is counted, never dropped silently); bench/latency.py's
paced publisher spreads its sends at the rate asked."""
from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # bench/ is scripts, not a package

import latency  # noqa: E402
import latency_stats  # noqa: E402


def test_percentiles_are_nearest_rank() -> None:
    got = latency_stats.percentiles(range(100, 0, -1))  # 1..100, in any order
    assert (got["count"], got["p50"], got["p95"], got["p99"], got["max"]) == (100, 50, 95, 99, 100)
    small = latency_stats.percentiles([7.0, 3.0])
    assert (small["p50"], small["p95"], small["p99"]) == (3.0, 7.0, 7.0)
    empty = latency_stats.percentiles([])
    assert empty["count"] == 0 and math.isnan(empty["p99"])


def test_join_times_each_event_and_counts_what_does_not_match() -> None:
    events = [("e1", "at-10", 1000.0), ("e2", "at-10", 1100.0), ("e3", "burst", 2000.0)]
    alerts = [(["e1"], 1150.0), (["e2"], 1300.0), (["e1"], 1900.0), (["zz"], 5.0)]  # e1 twice; zz not offered
    cases = [(["e1"], 1400.0), (["e3"], 2600.0), (["yy"], 1.0)]  # e2 never reached a case; e3 has no alert
    forwards = [("e1", 1050.0), ("e2", 1120.0), ("xx", 3.0)]
    joined = latency_stats.join(events, alerts, cases, forwards)
    assert (joined.unknown_alerts, joined.unknown_cases) == (1, 1)
    at10, burst = joined.phases["at-10"], joined.phases["burst"]
    assert (at10.events, len(at10.alert), len(at10.case), at10.repeated_alerts) == (2, 2, 1, 1)
    assert sorted(at10.ingest_to_alert()) == [150.0, 200.0]  # e1's first alert counts
    assert sorted(at10.ingest_to_forward()) == [20.0, 50.0]
    assert sorted(at10.forward_to_alert()) == [100.0, 180.0]
    assert at10.alert_to_case() == [250.0]
    assert (burst.events, len(burst.alert), len(burst.case)) == (1, 0, 1)
    assert burst.alert_to_case() == []  # no alert to measure from
    assert at10.offered_rate() == 10.0  # 2 events 100 ms apart: one interval
    assert at10.rate_to("alert") == 2 / 0.3 and math.isnan(burst.rate_to("alert"))


class _Recorder:
    """A publisher that notes when each send reached it (the loop's clock)."""

    def __init__(self) -> None:
        self.at: list[float] = []
        self.flushed = False

    async def __aenter__(self) -> _Recorder:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.flushed = True

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.at.append(asyncio.get_running_loop().time())

    async def flush(self) -> None:
        self.flushed = True


def test_paced_publisher_spreads_sends_at_the_rate() -> None:
    inner = _Recorder()

    async def run() -> None:
        async with latency.Paced(inner, 200.0) as paced:  # type: ignore[arg-type]
            for _ in range(41):
                await paced.send("t", b"k", b"v")

    asyncio.run(run())
    assert len(inner.at) == 41 and inner.flushed
    span = inner.at[-1] - inner.at[0]
    assert 0.2 - 0.005 <= span < 0.2 + 1.0  # 40 intervals of 5 ms: never early, late only by scheduling
    assert all(b >= a for a, b in zip(inner.at, inner.at[1:]))
