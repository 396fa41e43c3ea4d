"""`povwatch status`: what the operator sees, as data, and how it is shown. Pure: no I/O here
(services/status_probe.py gathers the facts from Kafka and the monitor's /metrics).

    partition_lags(committed, offsets, topics)  consumer lag per topic and partition
    monitor_metrics(url, text)                  the monitor's readiness, pending and unmatched counts
    render_text(report) / render_json(report)   for a terminal / for a script

Lag of a partition = end offset - committed offset. A partition the group has not committed yet counts every
message still in the log (end - log start): both consumers start from the earliest offset.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from plumbing.table import render_table

__all__ = [
    "Offsets",
    "PartitionLag",
    "GroupStatus",
    "MonitorStatus",
    "StatusReport",
    "partition_lags",
    "monitor_metrics",
    "unreachable_monitor",
    "as_dict",
    "render_json",
    "render_text",
]

Offsets = Mapping[str, Sequence[tuple[int, int]]]  # topic -> (log start, end) per partition, index = partition


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing on this partition
    end: int | None  # None: the topic no longer exists
    lag: int | None  # None: unknown (the topic no longer exists)


@dataclass(frozen=True)
class GroupStatus:
    role: str  # "monitor" or "casefeed"
    group: str
    state: str  # Kafka's group state: Stable, Empty, PreparingRebalance, Dead (unknown group) ...
    members: int
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions if p.lag is not None)

    def topic_lags(self) -> dict[str, int]:
        lags: dict[str, int] = {}
        for p in self.partitions:
            lags[p.topic] = lags.get(p.topic, 0) + (p.lag or 0)
        return lags


@dataclass(frozen=True)
class MonitorStatus:
    url: str
    error: str | None = None  # why /metrics could not be read; None when it was
    registry_ready: bool | None = None  # None: not exported
    events_pending: int | None = None  # None: not exported
    unmatched: dict[str, int] = field(default_factory=dict)  # topic -> events about people not in the roster

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def unmatched_total(self) -> int:
        return sum(self.unmatched.values())


@dataclass(frozen=True)
class StatusReport:
    bootstrap: str
    brokers: int
    topics: dict[str, tuple[tuple[int, int], ...]]  # present project topics, catalogue order
    missing_topics: tuple[str, ...]
    groups: tuple[GroupStatus, ...]
    monitor: MonitorStatus


def partition_lags(committed: Mapping[tuple[str, int], int], offsets: Offsets, topics: Iterable[str]
                   ) -> tuple[PartitionLag, ...]:
    """Lag of every partition of `topics` (the group's input topics) and of every partition the group committed
    on, sorted by topic and partition. A committed offset below the log start (retention deleted those records)
    counts from the log start; one above the end (the topic was recreated) counts as no lag."""
    names = sorted(set(topics) | {t for t, _ in committed})
    lags: list[PartitionLag] = []
    for topic in names:
        if topic not in offsets:
            lags += [PartitionLag(t, p, off, None, None) for (t, p), off in sorted(committed.items()) if t == topic]
            continue
        for partition, (start, end) in enumerate(offsets[topic]):
            done = committed.get((topic, partition))
            read_from = start if done is None else max(done, start)
            lags.append(PartitionLag(topic, partition, done, end, max(end - read_from, 0)))
    return tuple(lags)


def unreachable_monitor(url: str, reason: str) -> MonitorStatus:
    return MonitorStatus(url, error=reason)


def monitor_metrics(url: str, text: str) -> MonitorStatus:
    """The monitor's state from its /metrics text: povwatch_registry_ready (1 = caught up),
    povwatch_events_pending (summed over its labels, if any) and povwatch_events_unmatched_total per topic."""
    ready: bool | None = None
    pending: float | None = None
    unmatched: dict[str, int] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        return MonitorStatus(url, error=f"unreadable /metrics: {exc}")
    for family in families:
        for sample in family.samples:
            if sample.name == "povwatch_registry_ready":  # ready when every sample says so
                ready = (True if ready is None else ready) and sample.value >= 1
            elif sample.name == "povwatch_events_pending":
                pending = (pending or 0.0) + sample.value
            elif sample.name == "povwatch_events_unmatched_total":
                topic = sample.labels.get("topic", "")
                unmatched[topic] = unmatched.get(topic, 0) + int(sample.value)
    return MonitorStatus(url, None, ready, None if pending is None else int(pending), dict(sorted(unmatched.items())))


def as_dict(report: StatusReport) -> dict[str, Any]:
    monitor = report.monitor
    return {
        "bootstrap": report.bootstrap,
        "broker": {"reachable": True, "brokers": report.brokers},
        "topics": [{"name": name, "partitions": len(parts), "end_offsets": [end for _, end in parts],
                    "messages": sum(end - start for start, end in parts)}
                   for name, parts in report.topics.items()],
        "missing_topics": list(report.missing_topics),
        "groups": [{"role": g.role, "group": g.group, "state": g.state, "members": g.members,
                    "total_lag": g.total_lag, "topic_lags": g.topic_lags(),
                    "partitions": [{"topic": p.topic, "partition": p.partition, "committed": p.committed,
                                    "end": p.end, "lag": p.lag} for p in g.partitions]}
                   for g in report.groups],
        "monitor": {"url": monitor.url, "reachable": monitor.reachable, "error": monitor.error,
                    "registry_ready": monitor.registry_ready, "events_pending": monitor.events_pending,
                    "events_unmatched": monitor.unmatched, "events_unmatched_total": monitor.unmatched_total},
    }


def render_json(report: StatusReport) -> str:
    return json.dumps(as_dict(report), ensure_ascii=False)


def _group_lines(group: GroupStatus) -> list[str]:
    members = f"{group.members} member{'' if group.members == 1 else 's'}"
    known = any(p.committed is not None for p in group.partitions)
    state = "unknown to the broker (never committed)" if group.state == "Dead" and not known else group.state
    lines = [f"group {group.group} ({group.role}): {state}, {members}, total lag {group.total_lag}"]
    if not group.partitions:
        lines.append("  nothing committed and no input topic present")
    uncommitted = False
    by_topic: dict[str, list[PartitionLag]] = {}
    for p in group.partitions:
        by_topic.setdefault(p.topic, []).append(p)
    rows: list[tuple[str, ...]] = []
    for topic, parts in by_topic.items():
        if parts[0].end is None:
            rows.append((topic, f"topic gone (committed on partitions {', '.join(str(p.partition) for p in parts)})"))
            continue
        cells = []
        for p in parts:
            mark = "*" if p.committed is None else ""
            uncommitted = uncommitted or p.committed is None
            cells.append(f"p{p.partition}={p.lag}{mark}")
        rows.append((topic, f"lag {sum(p.lag or 0 for p in parts):>6}", f"({' '.join(cells)})"))
    if rows:
        lines += render_table(None, rows, indent="  ").split("\n")
    if uncommitted:
        lines.append("  * nothing committed on that partition yet: every message in the log counts")
    return lines


def _monitor_line(monitor: MonitorStatus) -> str:
    if monitor.error is not None:
        return f"monitor {monitor.url}: not reachable ({monitor.error})"

    def shown(value: object | None, text: str) -> str:
        return "not exported" if value is None else text

    ready = shown(monitor.registry_ready, "ready" if monitor.registry_ready else "NOT READY (catching up)")
    pending = shown(monitor.events_pending, str(monitor.events_pending))
    detail = ", ".join(f"{t} {n}" for t, n in monitor.unmatched.items() if n)
    unmatched = f"{monitor.unmatched_total}" + (f" ({detail})" if detail else "")
    return f"monitor {monitor.url}: registry {ready}; events pending {pending}; events unmatched {unmatched}"


def render_text(report: StatusReport) -> str:
    lines = [f"broker {report.bootstrap}: reachable, {report.brokers} broker{'' if report.brokers == 1 else 's'}"]
    total = len(report.topics) + len(report.missing_topics)
    lines.append(f"topics: {len(report.topics)} of {total} present"
                 + (f"; MISSING: {', '.join(report.missing_topics)} (`povwatch topics ensure`)"
                    if report.missing_topics else ""))
    rows = [(name, f"{len(parts)} partition{'' if len(parts) == 1 else 's'}",
             "end offsets " + " ".join(str(end) for _, end in parts)) for name, parts in report.topics.items()]
    if rows:
        lines += render_table(None, rows, indent="  ").split("\n")
    for group in report.groups:
        lines += _group_lines(group)
    lines.append(_monitor_line(report.monitor))
    return "\n".join(lines)
