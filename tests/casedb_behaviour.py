"""The case database's behaviour (services.casedb.store), written once for every backend it runs on.

Not collected on its own (the name does not start with test_). Each backend's test module defines a `store`
fixture - an open CaseStore on empty tables - and imports these tests by name:

    pytest.register_assert_rewrite("tests.casedb_behaviour")   # before the import: detailed assert messages
    from tests.casedb_behaviour import test_x, test_y  # noqa: E402, F401

pytest collects an imported test function as a test of the importing module and resolves its fixtures there, so
the same test runs once on SQLite (tests/unit/test_casedb.py) and once on PostgreSQL
(tests/integration/test_casedb_postgres.py). What only one backend can show stays in that backend's module.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas.errors import SchemaError
from services.casedb.database import open_database
from services.casedb.models import Case, Evidence
from services.casedb.store import CaseStore, RecordResult
from services.cases.listing import cases_to_json, render_cases_table

HH1 = "652701000000000001"
HH2 = "652701000000000002"
VILLAGE = "652701100201"
RAISED = dt.datetime(2024, 7, 1, 8, 30, tzinfo=dt.UTC)


def household_alert(alert_id: str, household_id: str = HH1, *, rule: str = "MEDICAL_EXPENSE",
                    severity: str = "MEDIUM", reason: str = "住院自付 12,000 元，超过 10,000 元",
                    ) -> dict[str, Any]:
    return {"alert_id": alert_id, "household_id": household_id, "village_code": VILLAGE, "rule": rule,
            "severity": severity, "reason": reason, "event_ids": [f"ev-{alert_id}"],
            "occurred_at": dt.date(2024, 6, 28), "raised_at": RAISED}


def regional_alert(alert_id: str = "reg-1", region_code: str = VILLAGE) -> dict[str, Any]:
    return {"alert_id": alert_id, "region_code": region_code, "rule": "REGIONAL_DISASTER", "severity": "HIGH",
            "reason": "7 日内 5 户受灾", "household_ids": [HH1, HH2, "h3", "h4", "h5"],
            "event_ids": ["d1", "d2", "d3", "d4", "d5"], "window_start": dt.date(2024, 6, 20),
            "window_end": dt.date(2024, 6, 27), "occurred_at": dt.date(2024, 6, 20),
            "raised_at": dt.datetime(2024, 6, 28, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))}


def second_open_case_error(store: CaseStore) -> str:
    """Open a case through the store, then insert a second OPEN case for the same household straight through
    the ORM: the database itself must refuse it. Returns the database's error text."""
    store.record_household_alert(household_alert("a1"))
    now = dt.datetime.now(dt.UTC)
    with Session(store.engine) as session:
        session.add(Case(subject_kind="household", household_or_region=HH1, village_code=VILLAGE, status="OPEN",
                         max_severity="LOW", opened_at=now, updated_at=now))
        with pytest.raises(IntegrityError) as info:
            session.commit()
    return str(info.value)


def test_household_alerts_share_one_case_and_redelivery_is_a_duplicate(store: CaseStore) -> None:
    first = store.record_household_alert(household_alert("a1"))
    assert first.case_opened and not first.duplicate
    second = store.record_household_alert(household_alert("a2", rule="DISASTER_LOSS"))
    assert second == RecordResult(first.case_id, case_opened=False, duplicate=False)
    again = store.record_household_alert(household_alert("a1"))
    assert again == RecordResult(first.case_id, case_opened=False, duplicate=True)
    assert store.counts() == {"cases_open": 1, "evidence": 2}
    other = store.record_household_alert(household_alert("b1", HH2))
    assert other.case_opened and other.case_id != first.case_id
    assert store.counts() == {"cases_open": 2, "evidence": 3}


def test_max_severity_rises_and_never_drops(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a1", severity="MEDIUM"))
    [case] = store.list_cases()
    assert case.max_severity == "MEDIUM"
    store.record_household_alert(household_alert("a2", rule="SCHOOL_DROPOUT", severity="HIGH"))
    store.record_household_alert(household_alert("a3", rule="ASSET_PURCHASE", severity="LOW"))
    [case] = store.list_cases()
    assert case.max_severity == "HIGH"
    assert [e.severity for e in case.evidence] == ["MEDIUM", "HIGH", "LOW"]
    assert case.opened_at.tzinfo is not None and case.evidence[0].raised_at == RAISED
    assert case.evidence[0].reason == household_alert("a1")["reason"]           # Chinese text round-trips


def test_regional_alert_opens_a_village_case(store: CaseStore) -> None:
    result = store.record_regional_alert(regional_alert())
    assert result.case_opened
    [case] = store.list_cases()
    assert (case.subject_kind, case.household_or_region, case.village_code) == ("village", VILLAGE, VILLAGE)
    assert case.evidence[0].household_ids[:2] == (HH1, HH2)
    assert case.evidence[0].raised_at == dt.datetime(2024, 6, 27, 17, 0, tzinfo=dt.UTC)   # +08:00 -> UTC
    assert case.evidence[0].occurred_at == dt.date(2024, 6, 20)
    # a household of that village is a different subject
    assert store.record_household_alert(household_alert("a1")).case_opened


def test_batch_with_duplicates_inside_it(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a0"))
    results = store.record_batch([
        ("alerts.household", household_alert("a0")),           # already stored
        ("alerts.household", household_alert("b1", HH2)),      # opens a case
        ("alerts.household", household_alert("b1", HH2)),      # same alert again in the batch
        ("alerts.household", household_alert("b2", HH2, severity="HIGH")),
        ("alerts.regional", regional_alert()),
    ])
    assert [(r.case_opened, r.duplicate) for r in results] == [
        (False, True), (True, False), (False, True), (False, False), (True, False)]
    assert results[1].case_id == results[2].case_id == results[3].case_id
    assert store.counts() == {"cases_open": 3, "evidence": 4}


def test_partial_unique_index_allows_one_open_case_per_subject(store: CaseStore) -> None:
    # (each backend's module checks the index definition itself, and what its conflict error names)
    store.record_household_alert(household_alert("a1"))
    now = dt.datetime.now(dt.UTC)

    def case(status: str) -> Case:
        return Case(subject_kind="household", household_or_region=HH1, village_code=VILLAGE, status=status,
                    max_severity="LOW", opened_at=now, updated_at=now)

    with Session(store.engine) as session:
        session.add(case("OPEN"))
        with pytest.raises(IntegrityError):
            session.commit()
    with Session(store.engine) as session, session.begin():
        session.add(case("CLOSED"))                      # closed cases may pile up
    with Session(store.engine) as session, session.begin():
        session.query(Case).update({Case.status: "CLOSED"})
    assert store.counts()["cases_open"] == 0
    reopened = store.record_household_alert(household_alert("a2"))
    assert reopened.case_opened                          # a new OPEN case next to the CLOSED ones
    with Session(store.engine) as session, session.begin():
        session.add(case("CLOSED"))
    assert store.counts() == {"cases_open": 1, "evidence": 2}


def test_lost_race_on_the_open_case_is_retried(store: CaseStore) -> None:
    """Another writer commits the OPEN case between our read and our insert: we re-read and attach."""
    state = {"fired": False}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO cases") and not state["fired"]:
            state["fired"] = True
            other = open_database(store.engine.url.render_as_string(hide_password=False))
            try:
                assert other.record_household_alert(household_alert("rival")).case_opened
            finally:
                other.close()

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        result = store.record_household_alert(household_alert("mine"))
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert state["fired"] and not result.case_opened and not result.duplicate
    [case] = store.list_cases()
    assert {e.alert_id for e in case.evidence} == {"rival", "mine"}


def test_lost_race_on_the_alert_id_reports_a_duplicate(store: CaseStore) -> None:
    first = store.record_household_alert(household_alert("a1"))
    state = {"fired": False}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # before our first write: SQLite has one writer, so the rival must commit before we take the lock; on
        # PostgreSQL, after it we would hold the case row's lock, which the rival needs
        if statement.startswith(("INSERT", "UPDATE")) and not state["fired"]:
            state["fired"] = True
            other = open_database(store.engine.url.render_as_string(hide_password=False))
            try:
                assert not other.record_household_alert(household_alert("a2")).duplicate
            finally:
                other.close()

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        result = store.record_household_alert(household_alert("a2"))
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert state["fired"]
    assert result == RecordResult(first.case_id, case_opened=False, duplicate=True)
    assert store.counts() == {"cases_open": 1, "evidence": 2}


def test_evidence_alert_id_is_unique_in_the_db(store: CaseStore) -> None:
    result = store.record_household_alert(household_alert("a1"))
    row = {"alert_id": "a1", "case_id": result.case_id, "rule": "MEDICAL_EXPENSE", "severity": "LOW",
           "reason": "x", "event_ids": [], "household_ids": [], "occurred_at": dt.date(2024, 1, 1),
           "raised_at": RAISED, "received_at": RAISED, "source_topic": "t"}
    with Session(store.engine) as session:
        with pytest.raises(IntegrityError):
            session.execute(insert(Evidence), [row])


def test_listing_and_rendering(store: CaseStore) -> None:
    store.record_household_alert(household_alert("m1", HH1, severity="MEDIUM"))
    store.record_household_alert(household_alert("h1", HH2, rule="DEATH_IN_HOUSEHOLD", severity="HIGH",
                                                  reason="户主死亡（45 岁，劳动年龄）"))
    store.record_household_alert(household_alert("h2", HH2, rule="DEATH_IN_HOUSEHOLD", severity="HIGH",
                                                  reason="户主死亡（45 岁，劳动年龄）"))
    store.record_household_alert(household_alert("h3", HH2, rule="DISASTER_LOSS", severity="MEDIUM"))
    store.record_regional_alert(regional_alert())
    cases = store.list_cases()
    assert [c.household_or_region for c in cases] == [HH2, VILLAGE, HH1]   # HIGH (older first), then MEDIUM
    assert cases[0].opened_at <= cases[1].opened_at

    table = render_cases_table(cases)
    lines = table.splitlines()
    assert lines[0].split() == ["CASE", "SUBJECT", "VILLAGE", "STATUS", "SEVERITY", "ALERTS", "RULES"]
    assert len(lines) == 2 + 3
    assert lines[2].split() == [str(cases[0].id), HH2, VILLAGE, "OPEN", "HIGH", "3",
                                "DEATH_IN_HOUSEHOLD,DISASTER_LOSS"]
    assert "REGIONAL_DISASTER" in lines[3] and "MEDICAL_EXPENSE" in lines[4]
    assert "(no cases)" in render_cases_table([])

    text = cases_to_json(cases)
    assert "户主死亡（45 岁，劳动年龄）" in text and "\\u" not in text
    data = json.loads(text)
    assert [c["id"] for c in data] == [c.id for c in cases]
    assert data[0]["evidence"][0]["alert_id"] == "h1"
    assert data[0]["evidence"][0]["occurred_at"] == "2024-06-28"
    assert data[0]["evidence"][0]["raised_at"] == "2024-07-01T08:30:00+00:00"
    assert data[1]["evidence"][0]["household_ids"][0] == HH1


def test_malformed_alert_is_a_schema_error(store: CaseStore) -> None:
    bad = household_alert("x1")
    del bad["household_id"]
    with pytest.raises(SchemaError, match="household_id"):
        store.record_household_alert(bad)
    with pytest.raises(SchemaError, match="severity"):
        store.record_household_alert(household_alert("x2", severity="URGENT"))
    assert store.counts() == {"cases_open": 0, "evidence": 0}


# --- the alert lifecycle (services/casedb/lifecycle.py) ------------------------------------------------------
def escalations(store: CaseStore) -> list[tuple[str, str, str | None]]:
    """(by_user, on_day, note) of every ESCALATION row, oldest first."""
    from services.casedb.models import CaseHistory

    with Session(store.engine) as session:
        rows = session.scalars(select(CaseHistory).where(CaseHistory.kind == "ESCALATION").order_by(CaseHistory.id))
        return [(r.by_user, r.on_day.isoformat(), r.note) for r in rows]


def test_evidence_attaches_to_the_live_alert_of_its_rule(store: CaseStore) -> None:
    first = store.record_household_alert(household_alert("a1"))
    again = store.record_household_alert(household_alert("a2"))                      # same rule, same severity
    other = store.record_household_alert(household_alert("a3", rule="DISASTER_LOSS", severity="LOW"))
    assert first.case_alert_id is not None and again.case_alert_id == first.case_alert_id
    assert other.case_alert_id not in (None, first.case_alert_id)
    assert first.escalated_from is None and again.escalated_from is None
    [case] = store.list_cases()
    assert [(a.rule, a.status, a.severity, a.alert_ids) for a in case.alerts] == [
        ("MEDICAL_EXPENSE", "OPEN", "MEDIUM", ("a1", "a2")), ("DISASTER_LOSS", "OPEN", "LOW", ("a3",))]
    assert [e.case_alert_id for e in case.evidence] == [first.case_alert_id] * 2 + [other.case_alert_id]
    assert case.max_severity == "MEDIUM" and escalations(store) == []
    # a village case's alerts work alike
    village = store.record_regional_alert(regional_alert())
    [alert] = [c for c in store.list_cases() if c.id == village.case_id][0].alerts
    assert (alert.id, alert.rule, alert.status) == (village.case_alert_id, "REGIONAL_DISASTER", "OPEN")


def test_escalation_raises_the_alert_and_the_case_and_says_so(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a1", severity="MEDIUM"))
    store.record_household_alert(household_alert("d1", rule="DISASTER_LOSS", severity="LOW"))
    raised = store.record_household_alert(household_alert("a2", severity="HIGH"))
    assert raised.escalated_from == "MEDIUM" and not raised.case_opened
    lower = store.record_household_alert(household_alert("a3", severity="LOW"))     # never lowers
    assert lower.escalated_from is None and lower.case_alert_id == raised.case_alert_id
    [case] = store.list_cases()
    assert case.max_severity == "HIGH"
    assert [(a.rule, a.severity, a.status, a.alert_ids) for a in case.alerts] == [
        ("MEDICAL_EXPENSE", "HIGH", "OPEN", ("a1", "a2", "a3")), ("DISASTER_LOSS", "LOW", "OPEN", ("d1",))]
    [(by, day, note)] = escalations(store)
    assert by == "casefeed" and day == dt.datetime.now(dt.UTC).date().isoformat()
    assert note is not None and "MEDIUM -> HIGH" in note and "MEDICAL_EXPENSE" in note and "a2" in note
    # the other rule's alert escalates on its own
    assert store.record_household_alert(household_alert("d2", rule="DISASTER_LOSS", severity="MEDIUM")
                                        ).escalated_from == "LOW"
    assert [n for _, _, n in escalations(store)][1] == "DISASTER_LOSS LOW -> MEDIUM (alert d2)"
    assert store.list_cases()[0].max_severity == "HIGH"                               # the case stays HIGH


def test_an_acknowledged_alert_that_escalates_is_open_again(store: CaseStore) -> None:
    from services.casedb.models import CaseAlert

    first = store.record_household_alert(household_alert("a1", severity="LOW"))
    with Session(store.engine) as session, session.begin():
        alert = session.get(CaseAlert, first.case_alert_id)
        assert alert is not None
        alert.status, alert.acknowledged_by, alert.acknowledged_at = "ACKNOWLEDGED", "clerk", RAISED
    store.record_household_alert(household_alert("a2", severity="LOW"))               # attaches, stays acknowledged
    assert store.list_cases()[0].alerts[0].status == "ACKNOWLEDGED"
    assert store.record_household_alert(household_alert("a3", severity="MEDIUM")).escalated_from == "LOW"
    [alert_view] = store.list_cases()[0].alerts
    assert (alert_view.status, alert_view.severity, alert_view.acknowledged_by) == ("OPEN", "MEDIUM", "clerk")


def test_redelivered_alert_changes_nothing(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a1", severity="MEDIUM"))
    raised = store.record_household_alert(household_alert("a2", severity="HIGH"))
    before = store.list_cases()
    for alert_id, severity in (("a1", "MEDIUM"), ("a2", "HIGH"), ("a2", "MEDIUM")):  # a lower one changes nothing
        again = store.record_household_alert(household_alert(alert_id, severity=severity))
        assert again.duplicate and again.case_alert_id == raised.case_alert_id and again.escalated_from is None
        assert not again.updated and again.events_added == 0
    assert store.list_cases() == before                                               # not even updated_at moved
    assert len(escalations(store)) == 1 and store.counts() == {"cases_open": 1, "evidence": 2}


def test_a_resolved_alert_or_a_closed_case_starts_afresh(store: CaseStore) -> None:
    from services.casedb.models import CaseAlert

    first = store.record_household_alert(household_alert("a1", severity="HIGH"))
    with Session(store.engine) as session, session.begin():
        session.execute(update(CaseAlert).values(status="RESOLVED", resolved_by="clerk", resolved_at=RAISED))
    reopened = store.record_household_alert(household_alert("a2", severity="MEDIUM"))  # same rule, case still OPEN
    assert reopened.case_id == first.case_id and reopened.case_alert_id != first.case_alert_id
    assert reopened.escalated_from is None
    [case] = store.list_cases()
    assert [(a.status, a.severity, a.alert_ids) for a in case.alerts] == [
        ("RESOLVED", "HIGH", ("a1",)), ("OPEN", "MEDIUM", ("a2",))]
    with Session(store.engine) as session, session.begin():
        session.execute(update(Case).values(status="CLOSED"))
        session.execute(update(CaseAlert).values(status="RESOLVED"))
    fresh = store.record_household_alert(household_alert("a3", severity="LOW"))
    assert fresh.case_opened and fresh.case_id != first.case_id
    [new_case] = store.list_cases(status="OPEN")
    assert [(a.status, a.severity, a.alert_ids) for a in new_case.alerts] == [("OPEN", "LOW", ("a3",))]
    assert escalations(store) == []


def test_one_live_alert_per_case_and_rule_in_the_db(store: CaseStore) -> None:
    from services.casedb.models import CaseAlert

    first = store.record_household_alert(household_alert("a1"))
    with Session(store.engine) as session:
        session.add(CaseAlert(case_id=first.case_id, household_id=HH1, rule="MEDICAL_EXPENSE", status="ACKNOWLEDGED",
                              severity="LOW", opened_at=RAISED, updated_at=RAISED))
        with pytest.raises(IntegrityError):
            session.commit()
    with Session(store.engine) as session, session.begin():                          # resolved ones may pile up
        for _ in range(2):
            session.add(CaseAlert(case_id=first.case_id, household_id=HH1, rule="MEDICAL_EXPENSE",
                                  status="RESOLVED", severity="LOW", opened_at=RAISED, updated_at=RAISED))


def test_cases_json_shows_the_alerts_with_their_status(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a1", severity="MEDIUM"))
    store.record_household_alert(household_alert("a2", severity="HIGH"))
    [case] = json.loads(cases_to_json(store.list_cases()))
    [alert] = case["alerts"]
    assert {k: alert[k] for k in ("rule", "status", "severity", "alert_ids", "resolved_by")} == {
        "rule": "MEDICAL_EXPENSE", "status": "OPEN", "severity": "HIGH", "alert_ids": ["a1", "a2"],
        "resolved_by": None}
    assert alert["opened_at"].endswith("+00:00")
    assert [e["case_alert_id"] for e in case["evidence"]] == [alert["id"]] * 2


# --- the report's rows (services/cases/report_query.py) -------------------------------------------------------
def _utc(day: dt.date, hour: int = 4) -> dt.datetime:
    """`hour` o'clock Beijing time on `day`, in UTC."""
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone(dt.timedelta(hours=8))
                       ).astimezone(dt.UTC)


def fill_report_db(url: str) -> None:
    """Cases of 2025 for the report: Jinghe (652722) a MARGINAL household with an alert in February and two in
    March; a SUDDEN_HARDSHIP household alerted in February and carried to LABEL on 3 March; Bole (652701) a
    household not in the roster alerted at 00:30 on 1 April Beijing time (31 March in UTC) and a village case
    opened on 10 March and resolved on 15 March."""
    from decimal import Decimal

    from services.casedb.models import CaseHistory, Household

    hh_a, hh_b, hh_c = "652722000000000001", "652722000000000002", "652701000000000003"
    received = {"a0": _utc(dt.date(2025, 2, 25)), "a1": _utc(dt.date(2025, 3, 5), 0),
                "a2": _utc(dt.date(2025, 3, 20)), "b1": _utc(dt.date(2025, 2, 10)),
                "c1": dt.datetime(2025, 3, 31, 16, 30, tzinfo=dt.UTC), "v1": _utc(dt.date(2025, 3, 10))}
    with open_database(url) as store:
        for alert_id, household in (("a0", hh_a), ("a1", hh_a), ("a2", hh_a), ("b1", hh_b), ("c1", hh_c)):
            store.record_household_alert({**household_alert(alert_id, household), "village_code": household[:12]})
        village = store.record_regional_alert(regional_alert("v1", "652701100201")).case_id
        with Session(store.engine) as session, session.begin():
            for alert_id, at in received.items():
                session.execute(update(Evidence).where(Evidence.alert_id == alert_id).values(received_at=at))
            for case in session.scalars(select(Case)):
                first = min(e.received_at for e in case.evidence)
                case.opened_at = case.updated_at = first
            for household, category in ((hh_a, "MARGINAL"), (hh_b, "SUDDEN_HARDSHIP")):
                session.add(Household(household_id=household, village_code=household[:12], category=category,
                                      monitoring_status="NOT_INCLUDED", labour_capacity="ABLE",
                                      per_capita_income=Decimal("8000.00"), household_size=4, updated_at=RAISED))
            case_b = session.scalar(select(Case.id).where(Case.household_or_region == hh_b))
            assert case_b is not None
            for step, day in (("APPLY", 11), ("PUBLIC_NOTICE", 12), ("TOWNSHIP_VERIFY", 20), ("COUNTY_CONFIRM", 28)):
                session.add(CaseHistory(case_id=case_b, household_id=hh_b, kind="STEP", workflow="INCLUSION",
                                        step=step, by_user="u", on_day=dt.date(2025, 2, day), recorded_at=RAISED))
            for step, day in (("DATA_COMPARE", 2), ("LABEL", 3)):
                session.add(CaseHistory(case_id=case_b, household_id=hh_b, kind="STEP", workflow="INCLUSION",
                                        step=step, by_user="u", on_day=dt.date(2025, 3, day), recorded_at=RAISED))
            session.execute(update(Case).where(Case.id == village).values(status="CLOSED"))
            session.add(CaseHistory(case_id=village, household_id="652701100201", kind="RESOLVE", by_user="u",
                                    on_day=dt.date(2025, 3, 15), recorded_at=RAISED))


def test_report_rows_from_the_case_db(store: CaseStore) -> None:
    from services.cases.report import Period, PeriodKind, compute
    from services.cases.report_query import load_rows

    fill_report_db(store.engine.url.render_as_string(hide_password=False))
    march = Period(PeriodKind.MONTHLY, 2025, 3)
    cases, evidence, steps = load_rows(store, since=march.previous().start, until=march.end)
    # Beijing days: c1 (31 March 16:30 UTC) arrived on 1 April, after the period; so did its case
    assert sorted((e.county, e.category, e.received_on.isoformat()) for e in evidence) == [
        ("652701", "VILLAGE", "2025-03-10"),
        ("652722", "MARGINAL", "2025-02-25"), ("652722", "MARGINAL", "2025-03-05"),
        ("652722", "MARGINAL", "2025-03-20"), ("652722", "SUDDEN_HARDSHIP", "2025-02-10")]
    assert sorted((c.category, c.opened_on.isoformat(), c.closed_on and c.closed_on.isoformat()) for c in cases) == [
        ("MARGINAL", "2025-02-25", None), ("SUDDEN_HARDSHIP", "2025-02-10", None),
        ("VILLAGE", "2025-03-10", "2025-03-15")]
    april = load_rows(store, since=dt.date(2025, 4, 1), until=dt.date(2025, 4, 30))
    assert [(e.county, e.category, e.received_on.isoformat()) for e in april[1]] == [
        ("652701", "UNKNOWN", "2025-04-01")]
    assert [(s.step, s.on_day.isoformat()) for s in sorted(steps, key=lambda s: s.seq)][-1] == ("LABEL", "2025-03-03")
    report = compute(march, dt.date(2025, 7, 1), cases=cases, evidence=evidence, steps=steps)
    lines = {(line.county, line.category): line for line in report.lines}
    marginal, sudden = lines["652722", "MARGINAL"], lines["652722", "SUDDEN_HARDSHIP"]
    assert (marginal.values["new_alerts"], marginal.previous["new_alerts"]) == (2, 1)
    assert (marginal.values["open_cases"], marginal.values["open_age_30to90"]) == (1, 1)
    assert (sudden.values["households_included"], sudden.values["open_step_LABEL"]) == (1, 1)
    assert sudden.previous["open_step_COUNTY_CONFIRM"] == 1
    village = lines["652701", "VILLAGE"]
    assert (village.values["new_alerts"], village.values["open_cases"]) == (1, 0)    # resolved on 15 March
    assert ("652701", "UNKNOWN") not in lines
