"""Prometheus metrics of the monitor (served on /metrics; names start `povwatch_`)."""
from __future__ import annotations

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
PROCESSED = Counter("povwatch_monitor_processed_total",
                    "Messages each stage finished handling (matched, unmatched, duplicate or parked)", ["stage"])
FORWARDED = Counter("povwatch_monitor_forwarded_total", "Messages a stage sent on to the next stage", ["stage"])


def initialise(event_topics: list[str], registry_topics: list[str]) -> None:
    """Create every labelled series at zero, so rate() and increase() see the first event after a start."""
    from services.monitor.rules import Rule, Severity

    for topic in [*event_topics, *registry_topics]:
        EVENTS_CONSUMED.labels(topic)
    for topic in event_topics:
        EVENTS_UNMATCHED.labels(topic)
        DEAD_LETTERS.labels(topic)
    for rule in Rule:
        for severity in Severity:
            ALERTS.labels(rule.value, severity.value)
    for stage in ("registry", "person", "household", "village"):
        PROCESSED.labels(stage)
    for stage in ("person", "household"):
        FORWARDED.labels(stage)
    REGISTRY_READY.set(0)
