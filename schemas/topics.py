"""Topic names: the one place that spells them (docs/architecture.md, "Topics").

Keys: event topics and `registry.persons` are keyed by person_key and share a partition count, so the
monitor's person stage can look events up in a table partitioned like the stream; `registry.households`,
`registry.household-status` and the household events are keyed by household_id, likewise.

One writer per topic: the roster load writes the registry topics, the case DB's relay `registry.household-status`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "REGISTRY_PERSONS",
    "REGISTRY_HOUSEHOLDS",
    "REGISTRY_HOUSEHOLD_STATUS",
    "ALERTS_HOUSEHOLD",
    "ALERTS_REGIONAL",
    "PROFILES_HOUSEHOLD",
    "MONITOR_DLQ",
    "AUDIT_EVENTS",
    "AUDIT_RETENTION_MS",
    "AUDIT_TOPIC",
    "CASEFEED_DLQ",
    "event_topic",
    "dlq_topic",
    "comparison_request_topic",
    "comparison_result_topic",
    "TopicSpec",
]

REGISTRY_PERSONS = "registry.persons"
REGISTRY_HOUSEHOLDS = "registry.households"  # compacted, key household_id: written by `povwatch roster load` only
# compacted, key household_id: a case's status after LABEL / ANNOUNCE_LABEL (the case DB's outbox, `povwatch relay`);
# partitioned like registry.households, so the monitor's household stage reads both as co-partitioned tables
REGISTRY_HOUSEHOLD_STATUS = "registry.household-status"
ALERTS_HOUSEHOLD = "alerts.household"
ALERTS_REGIONAL = "alerts.regional"
PROFILES_HOUSEHOLD = "profiles.household"  # compacted: the latest HouseholdProfile per household_id
MONITOR_DLQ = "dlq.monitor"
CASEFEED_DLQ = "dlq.casefeed"  # alerts the casefeed could not decode or the case DB refused
# the audit trail (plumbing/audit.py): append-only, one partition, key "<party>/<instance>", a hash chain per key
AUDIT_EVENTS = "audit.events"
AUDIT_RETENTION_MS = 10 * 366 * 24 * 3600 * 1000  # ten years: cleanup.policy=delete, never compacted


def event_topic(department: str, feed: str) -> str:
    return f"events.{department}.{feed}"


def dlq_topic(department: str) -> str:
    return f"dlq.{department}"


def comparison_request_topic(department: str) -> str:
    """Where the bureau asks `department` to compare person keys with its data (比对)."""
    return f"requests.{department}.comparison"


def comparison_result_topic(department: str) -> str:
    """Where `department` answers comparison requests, one result per person."""
    return f"events.{department}.comparison-result"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    partitions: int | None = None  # None: the project's partition count (dead-letter topics: 1)
    retention_ms: int | None = None  # None: the broker's default (delete topics) / compaction (compacted ones)


AUDIT_TOPIC = TopicSpec(AUDIT_EVENTS, partitions=1, retention_ms=AUDIT_RETENTION_MS)
