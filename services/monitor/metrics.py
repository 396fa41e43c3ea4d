"""Prometheus metrics of the monitor (served on /metrics; names start `povwatch_`)."""
from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("povwatch_events_consumed_total", "Messages consumed by the monitor", ["topic"])
EVENTS_UNMATCHED = Counter("povwatch_events_unmatched_total",
                           "Events about people (or households) not in the roster: nothing raised", ["topic"])
EVENTS_DUPLICATE = Counter("povwatch_events_duplicate_total", "Events already processed (same event_id)")
DEAD_LETTERS = Counter("povwatch_monitor_dead_letters_total", "Messages the monitor could not decode", ["topic"])
ALERTS = Counter("povwatch_alerts_total", "Alerts raised", ["rule", "severity"])
REGISTRY_SIZE = Gauge("povwatch_registry_entries", "Entries in the monitor's registry tables", ["table"])
REGISTRY_READY = Gauge("povwatch_registry_ready", "1 once the registry tables have caught up at start-up")
LATENCY = Histogram(
    "povwatch_event_latency_seconds",
    "From the connector's ingested_at to the end of rule evaluation",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
PENDING = Gauge("povwatch_events_pending", "Events waiting for their person or household to reach the registry",
                ["stage"])
PENDING_PARKED = Counter("povwatch_events_parked_total",
                         "Events parked to wait for their person (stage person) or household (stage household)",
                         ["stage", "topic"])
PENDING_RELEASED = Counter("povwatch_events_released_total",
                           "Parked events processed once their person or household arrived", ["stage"])
STATE_ENTRIES = Gauge("povwatch_monitor_state_entries", "Keys in a stage's partition-local state", ["stage"])
PARTITIONS_READY = Gauge("povwatch_monitor_partitions_ready",
                         "Assigned partitions whose tables and state are loaded", ["stage"])
PARTITIONS_ASSIGNED = Gauge("povwatch_monitor_partitions_assigned", "Partitions assigned to this worker", ["stage"])
BATCH_SECONDS = Histogram("povwatch_monitor_batch_seconds", "Time to process, send and commit one batch", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BATCH_DONE = Gauge("povwatch_monitor_last_batch_timestamp_seconds",
                   "When a stage last finished a batch that read messages (Unix time)", ["stage"])
RECOVERIES = Counter("povwatch_monitor_recoveries_total",
                     "Batches abandoned on a transient failure (state reloaded, nothing committed)", ["stage"])
EVENTS_TOO_LATE = Counter("povwatch_events_too_late_total",
                          "Events dated at or before the history horizon of their household or village: not judged",
                          ["stage"])
PROCESSED = Counter("povwatch_monitor_processed_total",
                    "Messages each stage finished handling (matched, unmatched, duplicate or parked)", ["stage"])
FACTS_KEPT = Counter("povwatch_monitor_facts_kept_total",
                     "Events kept as facts of their household or village, by stage and event topic",
                     ["stage", "topic"])
FORWARDED = Counter("povwatch_monitor_forwarded_total", "Messages a stage sent on to another stage (`to`)",
                    ["stage", "to"])


def initialise(event_topics: list[str], registry_topics: list[str]) -> None:
    """Create every labelled series at zero, so rate() and increase() see the first event after a start."""
    from schemas.alerts import Rule, Severity

    for topic in [*event_topics, *registry_topics]:
        EVENTS_CONSUMED.labels(topic)
    for topic in event_topics:
        EVENTS_UNMATCHED.labels(topic)
        PENDING_PARKED.labels("person", topic)
        DEAD_LETTERS.labels(topic)
        FACTS_KEPT.labels("household", topic)
    for rule in Rule:
        for severity in Severity:
            ALERTS.labels(rule.value, severity.value)
    for stage in ("registry", "person", "household", "village"):
        PROCESSED.labels(stage)
    for stage, to in (("person", "household"), ("person", "village"), ("household", "village")):
        FORWARDED.labels(stage, to)
    for stage in ("person", "household"):
        PENDING.labels(stage)
        PENDING_RELEASED.labels(stage)
    for stage in ("household", "village"):
        EVENTS_TOO_LATE.labels(stage)
    for stage in ("person", "household", "village"):
        STATE_ENTRIES.labels(stage)
        PARTITIONS_READY.labels(stage)
        PARTITIONS_ASSIGNED.labels(stage)
        RECOVERIES.labels(stage)
    REGISTRY_READY.set(0)
TIMERS_FIRED = Counter("povwatch_monitor_timers_fired_total",
                       "Timers that came due and were judged (JOB_LOSS, WATER_UNSAFE, REGIONAL_WATER)", ["rule"])
REGIONAL_BEYOND_LIST = Counter("povwatch_monitor_regional_beyond_list_total",
                               "Regional records neither kept nor counted: every period they fall in alerted with "
                               "the most households an alert lists (POVWATCH_RULES__REGIONAL_LIST_MAX)", ["rule"])

FEED_OVERDUE = Gauge("povwatch_feed_overdue",
                     "1 when a department feed is past its deadline in the feed calendar (POVWATCH_FEEDS_CALENDAR) "
                     "without an event, else 0", ["department", "feed"])
FEED_LAST_EVENT = Gauge("povwatch_feed_last_event_timestamp_seconds",
                        "When povwatch last received an event of the feed (Unix time; absent: never)",
                        ["department", "feed"])


def observe_many(histogram: Histogram, amounts: list[float]) -> None:
    """`histogram.observe(a)` for every amount, with one lock per bucket instead of one per amount (the stages
    observe each event's latency: a batch's are observed together). Falls back to one call each if the client's
    histogram is not laid out as expected."""
    bounds, buckets, total = (getattr(histogram, n, None) for n in ("_upper_bounds", "_buckets", "_sum"))
    if not amounts:
        return
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1  # the first bucket whose bound is >= amount (as observe)
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(amounts))


class Tally:
    """Counts a batch's increments per labelled series and applies them once (`apply`, at the batch's flush):
    prometheus_client takes a lock per `inc`, and the stages count several things per event."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, tuple[str, ...]], list[Any]] = {}
        self.latencies: list[float] = []  # povwatch_event_latency_seconds, observed at `apply`

    def add(self, metric: Counter, *labels: str, n: int = 1) -> None:
        key = (id(metric), labels)
        held = self._counts.get(key)
        if held is None:
            self._counts[key] = [metric, labels, n]
        else:
            held[2] += n

    def apply(self) -> None:
        for metric, labels, n in self._counts.values():
            metric.labels(*labels).inc(n)
        self._counts.clear()
        observe_many(LATENCY, self.latencies)
        self.latencies = []

    def clear(self) -> None:
        """Drop what a failed batch counted: its replay counts it again."""
        self._counts.clear()
        self.latencies = []
