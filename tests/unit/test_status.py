"""`povwatch status`, the pure part: lag arithmetic, the monitor's /metrics, and what the operator reads."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from services.status import (
    GroupStatus,
    MonitorStatus,
    PartitionLag,
    StatusReport,
    as_dict,
    monitor_metrics,
    partition_lags,
    render_json,
    render_text,
    unreachable_monitor,
)

HOSP = "events.medical-security.hospitalization"
DROP = "events.education.dropout"
URL = "http://127.0.0.1:9464/metrics"


# --- lag -----------------------------------------------------------------------------------------------------


def test_lag_is_end_minus_committed_per_partition() -> None:
    offsets = {HOSP: [(0, 10), (0, 4), (0, 7)]}
    lags = partition_lags({(HOSP, 0): 7, (HOSP, 1): 4, (HOSP, 2): 0}, offsets, [HOSP])
    assert lags == (PartitionLag(HOSP, 0, 7, 10, 3), PartitionLag(HOSP, 1, 4, 4, 0), PartitionLag(HOSP, 2, 0, 7, 7))


def test_an_uncommitted_partition_counts_what_is_left_in_the_log() -> None:
    offsets = {HOSP: [(2, 10), (0, 0)]}  # partition 0: records 0 and 1 deleted by retention
    assert partition_lags({}, offsets, [HOSP]) == (PartitionLag(HOSP, 0, None, 10, 8),
                                                   PartitionLag(HOSP, 1, None, 0, 0))


def test_committed_offsets_outside_the_log() -> None:
    offsets = {HOSP: [(50, 60), (0, 5)]}
    lags = partition_lags({(HOSP, 0): 20, (HOSP, 1): 9}, offsets, [HOSP])
    assert [p.lag for p in lags] == [10, 0]  # below the log start: counted from it; above the end: no lag


def test_committed_topics_beyond_the_inputs_are_shown_and_gone_topics_have_no_lag() -> None:
    offsets = {HOSP: [(0, 3)], "povwatch-monitor-household": [(0, 9), (0, 1)]}
    committed = {("povwatch-monitor-household", 0): 9, ("povwatch-monitor-household", 1): 0, ("old.topic", 2): 5}
    lags = partition_lags(committed, offsets, [HOSP, DROP])  # DROP: missing and never committed: nothing to say
    assert lags == (
        PartitionLag(HOSP, 0, None, 3, 3),
        PartitionLag("old.topic", 2, 5, None, None),
        PartitionLag("povwatch-monitor-household", 0, 9, 9, 0),
        PartitionLag("povwatch-monitor-household", 1, 0, 1, 1),
    )
    group = GroupStatus("monitor", "povwatch-monitor", "Stable", 1, lags)
    assert group.total_lag == 4
    assert group.topic_lags() == {HOSP: 3, "old.topic": 0, "povwatch-monitor-household": 1}


# --- the monitor's /metrics ----------------------------------------------------------------------------------


def _exposition(ready: float | None, pending: dict[str, float] | None, unmatched: dict[str, int]) -> str:
    """The text a monitor serves, written by prometheus_client itself."""
    registry = CollectorRegistry()
    if ready is not None:
        Gauge("povwatch_registry_ready", "ready", registry=registry).set(ready)
    if pending is not None:
        gauge = Gauge("povwatch_events_pending", "pending", ["stage"], registry=registry)
        for stage, value in pending.items():
            gauge.labels(stage).set(value)
    counter = Counter("povwatch_events_unmatched_total", "unmatched", ["topic"], registry=registry)
    for topic, count in unmatched.items():
        counter.labels(topic).inc(count)
    Counter("povwatch_events_consumed_total", "consumed", ["topic"], registry=registry).labels(HOSP).inc(99)
    return generate_latest(registry).decode()


def test_monitor_metrics_are_read_from_the_exposition() -> None:
    text = _exposition(1, {"person": 3, "household": 2}, {HOSP: 4, DROP: 0})
    status = monitor_metrics(URL, text)
    assert status == MonitorStatus(URL, None, True, 5, {DROP: 0, HOSP: 4})
    assert status.reachable and status.unmatched_total == 4


def test_a_monitor_catching_up_and_one_without_the_metrics() -> None:
    assert monitor_metrics(URL, _exposition(0, {}, {})).registry_ready is False
    bare = monitor_metrics(URL, _exposition(None, None, {}))
    assert (bare.registry_ready, bare.events_pending, bare.unmatched) == (None, None, {})
    assert "registry not exported; events pending not exported" in render_text(_report(monitor=bare))


def test_unreadable_metrics_are_a_reason_not_a_crash() -> None:
    status = monitor_metrics(URL, "povwatch_registry_ready{ 1\n")
    assert not status.reachable and status.error is not None and status.error.startswith("unreadable /metrics")


# --- rendering -----------------------------------------------------------------------------------------------


def _report(monitor: MonitorStatus | None = None, missing: tuple[str, ...] = ()) -> StatusReport:
    monitor_group = GroupStatus("monitor", "povwatch-monitor", "Stable", 1, (
        PartitionLag(HOSP, 0, 7, 10, 3), PartitionLag(HOSP, 1, None, 2, 2), PartitionLag(DROP, 0, 5, 5, 0)))
    casefeed_group = GroupStatus("casefeed", "povwatch-casefeed", "Dead", 0, (
        PartitionLag("alerts.household", 0, None, 0, 0),))
    return StatusReport(
        bootstrap="127.0.0.1:9092", brokers=1,
        topics={HOSP: ((0, 10), (0, 2)), DROP: ((0, 5),), "dlq.monitor": ((0, 0),)},
        missing_topics=missing, groups=(monitor_group, casefeed_group),
        monitor=monitor or MonitorStatus(URL, None, True, 0, {HOSP: 4, DROP: 0}))


def test_text_for_the_operator() -> None:
    text = render_text(_report(missing=("dlq.casefeed",)))
    lines = text.splitlines()
    assert lines[0] == "broker 127.0.0.1:9092: reachable, 1 broker"
    assert lines[1] == "topics: 3 of 4 present; MISSING: dlq.casefeed (`povwatch topics ensure`)"
    assert f"  {HOSP}  2 partitions  end offsets 10 2" in lines
    assert "  dlq.monitor                              1 partition   end offsets 0" in lines
    assert "group povwatch-monitor (monitor): Stable, 1 member, total lag 5" in lines
    assert f"  {HOSP}  lag      5  (p0=3 p1=2*)" in lines
    assert "  * nothing committed on that partition yet: every message in the log counts" in lines
    assert ("group povwatch-casefeed (casefeed): unknown to the broker (never committed), 0 members, total lag 0"
            in lines)
    assert lines[-1] == (f"monitor {URL}: registry ready; events pending 0; events unmatched 4 ({HOSP} 4)")


def test_text_when_the_monitor_does_not_answer() -> None:
    text = render_text(_report(monitor=unreachable_monitor(URL, "Connection refused")))
    assert text.splitlines()[-1] == f"monitor {URL}: not reachable (Connection refused)"
    assert "MISSING" not in text and "topics: 3 of 3 present" in text


def test_json_for_scripts() -> None:
    data = json.loads(render_json(_report()))
    assert data == as_dict(_report())
    assert data["broker"] == {"reachable": True, "brokers": 1}
    assert data["topics"][0] == {"name": HOSP, "partitions": 2, "end_offsets": [10, 2], "messages": 12}
    assert data["missing_topics"] == []
    monitor_group = data["groups"][0]
    assert (monitor_group["group"], monitor_group["total_lag"], monitor_group["topic_lags"]) == (
        "povwatch-monitor", 5, {HOSP: 5, DROP: 0})
    assert monitor_group["partitions"][1] == {"topic": HOSP, "partition": 1, "committed": None, "end": 2, "lag": 2}
    assert data["monitor"] == {"url": URL, "reachable": True, "error": None, "registry_ready": True,
                               "events_pending": 0, "events_unmatched": {HOSP: 4, DROP: 0},
                               "events_unmatched_total": 4}
