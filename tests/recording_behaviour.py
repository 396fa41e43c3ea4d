"""A poll batch of alerts is recorded as its messages one at a time would be (services/casedb/recording.py), on
every backend: written once, imported by name by tests/unit/test_casedb.py (SQLite) and tests/integration/
test_casedb_postgres.py (PostgreSQL), as tests/casedb_behaviour.py is.

The alerts: new ones (households sharing cases, rules sharing case alerts, severities raising them), exact
redeliveries, a second department's report of a known alert (its event added), a worse re-emission (its case alert
escalated), and one the database refuses (an alert_id longer than the column). Recorded through the casefeed's
`record_isolated` (the whole batch in one transaction, or each alone when the DB refuses it), the case DB and the
outcome of every message must be the same whatever the batches: all in one, one message each, or any split.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.casedb.models import Case, CaseAlert, CaseHistory, Evidence, EvidenceEvent
from services.casedb.store import CaseStore, RecordResult
from services.casefeed.handling import Refusal, record_isolated

TOPIC = "alerts.household"
PS, HEALTH, EDU = ("events.public-security.registration-change", "events.health.chronic-disease",
                   "events.education.dropout")
RULES = ("MEDICAL_EXPENSE", "DISASTER_LOSS", "SCHOOL_DROPOUT")
SEVERITIES = ("LOW", "MEDIUM", "HIGH")
NOW = dt.datetime(2024, 8, 1, 4, 0, tzinfo=dt.UTC)
Op = tuple[str, int, int, int]  # (what, a, b, c): see `alerts`


def alerts(ops: Sequence[Op]) -> list[tuple[str, dict[str, Any]]]:
    """The messages of `ops`: ("new", household, rule, severity), ("dup", i, _, _) the i-th alert made so far
    exactly as first sent, ("more", i, topic, _) its latest version with another department's event, ("worse", i,
    _, _) its latest version at HIGH, ("bad", _, _, _) an alert the DB refuses."""
    first: list[dict[str, Any]] = []
    latest: list[dict[str, Any]] = []
    out: list[tuple[str, dict[str, Any]]] = []
    for n, (what, a, b, c) in enumerate(ops):
        if what == "new" or not first:
            alert = {"alert_id": f"al-{n}", "household_id": f"H-{a % 4}", "village_code": "652701100201",
                     "rule": RULES[b % 3], "severity": SEVERITIES[c % 3], "reason": f"原因 {n}",
                     "event_ids": [f"ev-{n}"], "event_topics": [PS], "occurred_at": dt.date(2024, 6, 28),
                     "raised_at": dt.datetime(2024, 7, 1, 8, 30, tzinfo=dt.UTC)}
            first.append(alert)
            latest.append(alert)
        elif what == "bad":
            alert = {**first[0], "alert_id": "x" * 200}
        else:
            i = a % len(first)
            if what == "dup":
                alert = first[i]
            elif what == "more":
                topic = (HEALTH, EDU)[b % 2]
                alert = {**latest[i], "event_ids": [*latest[i]["event_ids"], f"ev-{n}"],
                         "event_topics": [*latest[i]["event_topics"], topic], "reason": f"原因 {n}"}
            else:
                alert = {**latest[i], "severity": "HIGH", "reason": f"更严重 {n}"}
            latest[i] = alert if what != "dup" else latest[i]
        out.append((TOPIC, alert))
    return out


def wipe(store: CaseStore) -> None:
    with Session(store.engine) as session, session.begin():
        for table in (EvidenceEvent, Evidence, CaseHistory, CaseAlert, Case):
            session.execute(delete(table))


def snapshot(store: CaseStore) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the case feed wrote, with row ids replaced by what they stand for (ids differ with the batches on
    PostgreSQL, whose sequences a rolled-back batch advances)."""
    with Session(store.engine) as session:
        cases = {c.id: c for c in session.scalars(select(Case))}
        subject = {cid: (c.subject_kind, c.household_or_region) for cid, c in cases.items()}
        live = {a.id: a for a in session.scalars(select(CaseAlert))}
        alert_of = {aid: (subject[a.case_id], a.rule, a.status, a.severity) for aid, a in live.items()}
        return {
            "cases": sorted((*subject[c.id], c.village_code, c.status, c.max_severity) for c in cases.values()),
            "case_alerts": sorted(alert_of.values()),
            "evidence": sorted((e.alert_id, subject[e.case_id], alert_of.get(e.case_alert_id or 0), e.rule,
                                e.severity, e.reason, tuple(e.event_ids), tuple(e.household_ids), e.source_topic)
                               for e in session.scalars(select(Evidence))),
            "events": sorted((e.alert_id, e.event_id, e.topic or "", e.department or "")
                             for e in session.scalars(select(EvidenceEvent))),
            "history": sorted((subject[h.case_id], h.kind, h.by_user, h.note or "")
                              for h in session.scalars(select(CaseHistory))),
        }


def outcome(result: RecordResult | Refusal) -> tuple[Any, ...]:
    if isinstance(result, Refusal):
        return ("refused",)
    return (result.duplicate, result.updated, result.case_opened, result.escalated_from, result.events_added,
            result.sanitised, result.case_alert_id is not None)


def record(store: CaseStore, items: Sequence[tuple[str, dict[str, Any]]],
           sizes: Sequence[int]) -> list[tuple[Any, ...]]:
    """Record `items` in batches of the given sizes (cycled); the outcome of each message."""
    at_now = CaseStore(store.engine, clock=lambda: NOW)
    out, start, turn = [], 0, 0
    while start < len(items):
        size = sizes[turn % len(sizes)]
        out += [outcome(r) for r in record_isolated(at_now, items[start:start + size])]
        start, turn = start + size, turn + 1
    return out


MIXED: list[Op] = [("new", 0, 0, 1), ("new", 1, 0, 0), ("new", 0, 1, 0), ("dup", 0, 0, 0), ("new", 0, 0, 2),
                   ("more", 1, 0, 0), ("bad", 0, 0, 0), ("new", 2, 2, 1), ("worse", 2, 0, 0), ("more", 0, 1, 0),
                   ("dup", 5, 0, 0), ("new", 3, 1, 0), ("new", 2, 2, 2), ("more", 1, 1, 0), ("dup", 1, 0, 0)]


def test_a_mixed_batch_records_what_its_messages_one_at_a_time_record(store: CaseStore) -> None:
    items = alerts(MIXED)
    one_by_one = record(store, items, [1])
    alone = snapshot(store)
    wipe(store)
    together = record(store, items, [len(items)])
    assert together == one_by_one and snapshot(store) == alone
    # what the mix holds: a refusal, duplicates, second departments' events, an escalation, cases shared
    stored = [o for o in one_by_one if o != ("refused",)]
    assert len(stored) == len(items) - 1
    assert [n for n, o in enumerate(one_by_one) if o[0] is True] == [3, 10, 14]  # redeliveries
    assert [n for n, o in enumerate(one_by_one) if o[1:2] == (True,)] == [5, 8, 9, 13]  # news for a known alert
    assert [(n, o[3]) for n, o in enumerate(one_by_one) if o[3:4] not in [(None,), ()]] == [
        (4, "MEDIUM"), (8, "LOW"), (12, "MEDIUM")]  # escalations: a new alert on a live one, a worse re-emission
    assert len(alone["cases"]) == 4 and len(alone["evidence"]) == 7
    good = [item for item, o in zip(items, one_by_one) if o != ("refused",)]
    wipe(store)
    assert record(store, good, [len(good)]) == stored
    assert snapshot(store) == alone  # the refused message took nothing else with it


_OPS = st.lists(st.tuples(st.sampled_from(["new", "new", "dup", "more", "worse", "bad"]), st.integers(0, 9),
                          st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=24)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_any_split_of_a_batch_records_the_same(store: CaseStore, ops: list[Op], sizes: list[int]) -> None:
    items = alerts(ops)
    wipe(store)
    one_by_one = record(store, items, [1])
    alone = snapshot(store)
    wipe(store)
    assert record(store, items, sizes) == one_by_one
    assert snapshot(store) == alone
