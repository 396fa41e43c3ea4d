"""The figures of bench/latency.py, apart from Kafka and the case DB: which event reached which alert and case when,
per phase; percentiles; the table.

    Stamp                   one event (or probe message) and its times, in milliseconds since the epoch
    join(events, alerts, cases)
                            events (event id, phase, ingest ms), alerts (their event ids, alert ms) and cases
                            (their event ids, case ms) -> one Phase per phase: every event with its first alert
                            and first case, and what did not match (an event without an alert or a case, an
                            alert or a case about an event not offered, a second alert of one event)
    percentiles(values)     nearest-rank p50, p95 and p99 (and the count and max)
    report(result)          the tables bench/latency.py prints
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plumbing.table import render_table

__all__ = ["Phase", "join", "percentiles", "report", "PERCENTS"]

PERCENTS = (50, 95, 99)


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """{"count", "p50", "p95", "p99", "max"} of `values`, nearest rank (p99 of 100 values is the 99th smallest);
    an empty sequence gives count 0 and NaN for the others."""
    ordered = sorted(values)
    n = len(ordered)
    out: dict[str, float] = {"count": n}
    for p in PERCENTS:
        out[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * n) - 1)] if n else math.nan
    out["max"] = ordered[-1] if n else math.nan
    return out


@dataclass
class Phase:
    """The events of one phase and where they got to (times in ms since the epoch)."""

    name: str
    ingest: dict[str, float] = field(default_factory=dict)  # event id -> ingest time
    forward: dict[str, float] = field(default_factory=dict)  # event id -> the person stage's forward of it
    alert: dict[str, float] = field(default_factory=dict)  # event id -> its alert's time
    case: dict[str, float] = field(default_factory=dict)  # event id -> when its alert was written to the case DB
    repeated_alerts: int = 0  # alerts of an event that already had one (SAFETY_NET raises one per event)

    @property
    def events(self) -> int:
        return len(self.ingest)

    def ingest_to_alert(self) -> list[float]:
        return [self.alert[e] - t for e, t in self.ingest.items() if e in self.alert]

    def ingest_to_forward(self) -> list[float]:
        """The person stage's share: ingest -> the event re-keyed by household on <app id>.household-events."""
        return [self.forward[e] - t for e, t in self.ingest.items() if e in self.forward]

    def forward_to_alert(self) -> list[float]:
        """The household stage's share: the forwarded event -> its alert."""
        return [self.alert[e] - self.forward[e] for e in self.ingest if e in self.forward and e in self.alert]

    def alert_to_case(self) -> list[float]:
        return [self.case[e] - self.alert[e] for e in self.ingest if e in self.case and e in self.alert]

    def offered_rate(self) -> float:
        """Events a second as the connector published them: first to last ingest time."""
        span = (max(self.ingest.values()) - min(self.ingest.values())) / 1000 if self.ingest else 0.0
        return (self.events - 1) / span if span > 0 else math.nan

    def rate_to(self, stage: str) -> float:
        """Events a second from the first ingest to the last alert (`stage` "alert") or case ("case")."""
        reached = self.alert if stage == "alert" else self.case
        if not reached or not self.ingest:
            return math.nan
        span = (max(reached.values()) - min(self.ingest.values())) / 1000
        return len(reached) / span if span > 0 else math.nan


@dataclass
class Joined:
    phases: dict[str, Phase]
    unknown_alerts: int  # alerts naming no offered event
    unknown_cases: int  # case DB evidence naming no offered event


def join(events: Iterable[tuple[str, str, float]], alerts: Iterable[tuple[Sequence[str], float]],
         cases: Iterable[tuple[Sequence[str], float]], forwards: Iterable[tuple[str, float]] = ()) -> Joined:
    """Each event's alert and case (see the module doc), and its forward from the person stage (event id, ms). An
    alert or case row names its events; the first alert of an event counts, a second one is counted in
    `repeated_alerts`."""
    phases: dict[str, Phase] = {}
    phase_of: dict[str, Phase] = {}
    for event_id, phase, at in events:
        found = phases.setdefault(phase, Phase(phase))
        found.ingest[event_id] = at
        phase_of[event_id] = found
    for event_id, at in forwards:
        if event_id in phase_of:
            owner = phase_of[event_id]
            owner.forward[event_id] = min(owner.forward.get(event_id, at), at)
    unknown_alerts = unknown_cases = 0
    for event_ids, at in alerts:
        known = [e for e in event_ids if e in phase_of]
        unknown_alerts += not known
        for e in known:
            owner = phase_of[e]
            if e in owner.alert:
                owner.repeated_alerts += 1
                owner.alert[e] = min(owner.alert[e], at)
            else:
                owner.alert[e] = at
    for event_ids, at in cases:
        known = [e for e in event_ids if e in phase_of]
        unknown_cases += not known
        for e in known:
            owner = phase_of[e]
            owner.case[e] = min(owner.case.get(e, at), at)
    return Joined(phases, unknown_alerts, unknown_cases)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _triple(figures: dict[str, float]) -> str:
    return " / ".join(_ms(figures[f"p{p}"]) for p in PERCENTS)


def report(result: dict[str, Any]) -> str:
    """The tables of a result of bench/latency.py (its JSON)."""
    burst = result["burst"]
    lines = [
        f"maximum rate (a burst of {burst['events']:,} events, unpaced): connector {burst['published_per_s']:,.0f}/s,"
        f" to alerts {burst['alerts_per_s']:,.0f}/s, to cases {burst['cases_per_s']:,.0f}/s -> "
        f"maximum {result['max_rate']:,.0f} events/s (first ingest to last case)",
        "",
    ]
    header = ["offered", "events/s", "events", "alerts", "cases", "ingest->alert p50/p95/p99 ms",
              "alert->case p50/p95/p99 ms", "Kafka p50/p95/p99 ms", "p99 / Kafka p99"]
    rows = []
    for phase in result["phases"]:
        kafka = phase["kafka"]
        ratio = phase["ingest_to_alert"]["p99"] / kafka["p99"] if kafka["p99"] > 0 else math.nan
        rows.append([f"{phase['fraction']:.0%} ({phase['target_rate']:,.0f}/s)", f"{phase['offered_rate']:,.0f}",
                     f"{phase['events']:,}", f"{phase['alerts']:,}", f"{phase['cases']:,}",
                     _triple(phase["ingest_to_alert"]), _triple(phase["alert_to_case"]), _triple(kafka),
                     "-" if math.isnan(ratio) else f"{ratio:.1f}"])
    lines.append(render_table(header, rows, right_from=1))
    split = [[f"{phase['fraction']:.0%}", _triple(phase["ingest_to_forward"]), _triple(phase["forward_to_alert"])]
             for phase in result["phases"]]
    lines += ["", "where ingest->alert goes:",
              render_table(["offered", "person stage: ingest->forward ms", "household stage: forward->alert ms"],
                           split, right_from=1)]
    half = next((p for p in result["phases"] if abs(p["fraction"] - 0.5) < 1e-9), None)
    if half is not None:
        p99, kafka = half["ingest_to_alert"]["p99"], half["kafka"]["p99"]
        lines += ["", f"aim at 50 %: p99 ingest->alert {_ms(p99)} ms (< 500 ms: {'yes' if p99 < 500 else 'NO'}), "
                      f"{p99 / kafka if kafka > 0 else math.nan:.1f}x Kafka's p99 of {_ms(kafka)} ms "
                      f"(<= 5x: {'yes' if kafka > 0 and p99 <= 5 * kafka else 'NO'})"]
    m = result["machine"]
    lines.append(f"{result['households']:,} roster households; case DB {result['case_db_kind']}; {m['cores']} cores, "
                 f"Python {m['python']}, Kafka {m['kafka']}; one run on a shared machine: compare within the run")
    return "\n".join(lines)
