"""The pure parts of the sizing benchmarks: the year's volumes per feed (bench/year.py), what bounds a sweep
(bench/sweep.py) and the memory per million persons (bench/workers.py). The scripts themselves run small in
tests/integration/test_bench_sweep.py and test_bench_workers.py."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # bench/ is scripts, not a package

import sweep  # noqa: E402
import workers  # noqa: E402
import year  # noqa: E402

from connectors.catalog import EVENT_FEEDS  # noqa: E402

PREFECTURE = {"person": 300_000, "adult": 210_000, "student": 60_000, "household": 78_000, "village": 80}


def test_every_feed_of_the_catalogue_has_a_yearly_volume() -> None:
    assert set(year.VOLUMES) == set(EVENT_FEEDS)


def test_a_prefecture_year_is_several_million_rows_in_files_no_bigger_than_their_subjects() -> None:
    plans = year.plan_year(PREFECTURE)
    total = sum(p.rows for p in plans)
    assert 2_000_000 <= total <= 5_000_000, total
    for p in plans:
        unit = year.VOLUMES[(p.department, p.feed)].unit
        assert 1 <= p.per_file <= PREFECTURE[unit], p
    by_feed = {p.feed: p for p in plans}
    assert by_feed["employment"].files == 12 and by_feed["employment"].per_file == 105_000
    assert by_feed["identity-check"].rows == 300_000
    half = sum(p.rows for p in year.plan_year(PREFECTURE, 0.5))
    assert abs(half - total / 2) < total * 0.01


def test_a_year_needs_every_unit_and_a_positive_scale() -> None:
    with pytest.raises(ValueError, match="village"):
        year.plan_year({**PREFECTURE, "village": 0})
    with pytest.raises(ValueError, match="scale"):
        year.plan_year(PREFECTURE, 0)


def _result(busy: float, monitor_cpu: float) -> dict[str, Any]:
    stats = {"peak_rss_mb": 100.0, "rss_mb": 90.0, "write_mb": 0.0}
    return {"seconds": {"roster": 10.0, "connectors": 60.0, "drained": 90.0, "case_db": 100.0},
            "machine": {"cores": 2, "busy_cores": busy, "iowait_cores": 0.01},
            "monitor": {"behind_when_connectors_done": 5000},
            "processes": {"monitor": {**stats, "cpu_s": monitor_cpu}, "connector hrss": {**stats, "cpu_s": 30.0},
                          "connector pboc": {**stats, "cpu_s": 20.0},
                          "broker (Kafka)": {**stats, "cpu_s": 25.0, "write_mb": 500.0}}}


def test_a_saturated_machine_names_the_cpu_and_the_biggest_user() -> None:
    lines = sweep.bounds(_result(busy=1.95, monitor_cpu=90.0))
    assert "1.95 busy" in lines[0] and "1.65 by the sweep's processes, 0.30 by others" in lines[0]
    assert lines[1].startswith("cores used on average, by process: monitor 0.90, connectors 0.50, broker")
    assert "bound: the machine's CPU (cores saturated)" in lines[2]
    assert "the monitor took the most (90 CPU s" in lines[2]
    assert "5000 events behind" in lines[3] and "drained 20 s later" in lines[3] and "10 s more" in lines[3]
    assert "500 MB (5.0 MB/s)" in lines[4]


def test_an_idle_machine_names_the_busiest_process() -> None:
    lines = sweep.bounds(_result(busy=1.2, monitor_cpu=95.0))
    assert "not the machine's CPU as a whole" in lines[2] and "monitor with 0.95 cores" in lines[2]


def test_memory_per_million_is_the_growth_over_the_persons_added() -> None:
    small = {"registry_persons": 20_000, "rss_mb": 150.0}
    big = {"registry_persons": 1_020_000, "rss_mb": 600.0}
    assert workers.per_million(small, big) == pytest.approx(450.0)
    assert workers.per_million(big, big) != workers.per_million(big, big)  # NaN: no persons added


def test_cpu_per_event_adds_up_every_workers_cpu() -> None:
    run = {"events": 40_000, "cpu_s": [30.0, 28.0, None, 22.0]}  # a worker gone before it was read counts nothing
    assert workers.cpu_per_event(run) == pytest.approx(0.002)
