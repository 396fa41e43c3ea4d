"""The case DB's side of issue #11 (one fact, one alert; township regions; deadlines), written once for every backend.

Not collected on its own: tests/unit/test_casedb.py (SQLite) and tests/integration/test_casedb_postgres.py
(PostgreSQL) import these tests by name, each with its `store` fixture (an open CaseStore on empty tables), as with
tests/casedb_behaviour.py.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from connectors.framework import DEFAULT_ZONE
from schemas.alerts import REGIONAL_RULES, Rule
from services.casedb.database import open_database
from services.casedb.errors import NotInRegion, RecordRefused
from services.casedb.models import Case, CaseAlert, Evidence, EvidenceEvent, User
from services.casedb.store import CaseStore
from services.cases.listing import cases_to_json
from services.cases.overdue import count_overdue, deadlines
from services.cases.store import Cases
from tests.casedb_behaviour import RAISED, VILLAGE, escalations, household_alert, regional_alert

PS = "events.public-security.registration-change"
HEALTH = "events.health.chronic-disease"
CADRE = "events.intake.cadre-visit"
WATER = "events.water.drinking-water"
TOWNSHIP = VILLAGE[:9]
# case workers (role, region): the village of HH1's cases, its township and county, another county, the bureau
USERS = {"vil1": ("village", VILLAGE), "town1": ("township", TOWNSHIP), "county": ("county", VILLAGE[:6]),
         "other": ("county", "652722"), "bureau": ("bureau", "6527")}


_HASH: list[str] = []


@pytest.fixture
def users(store: CaseStore) -> dict[str, tuple[str, str]]:
    """USERS in the case DB (one shared password hash: argon2id is slow by design)."""
    from services.cases.users import hash_password

    if not _HASH:
        _HASH.append(hash_password("evidence-test-password"))
    with Session(store.engine) as session, session.begin():
        for name, (role, region) in USERS.items():
            session.add(User(name=name, role=role, region=region, password_hash=_HASH[0], created_at=RAISED))
    return USERS


def death(event_ids: list[str], topics: list[str] | None, *, severity: str = "HIGH",
          reason: str = "家庭成员死亡(户主, 44岁, 2024-06-20)") -> dict[str, Any]:
    alert = household_alert("death-1", rule="DEATH_IN_HOUSEHOLD", severity=severity, reason=reason)
    alert["event_ids"] = list(event_ids)
    if topics is not None:
        alert["event_topics"] = list(topics)
    return alert


def stored_events(store: CaseStore, alert_id: str) -> list[tuple[str, str | None, str | None]]:
    with Session(store.engine) as session:
        return [(r.event_id, r.topic, r.department) for r in session.scalars(
            select(EvidenceEvent).where(EvidenceEvent.alert_id == alert_id).order_by(EvidenceEvent.id))]


# --- one fact, one alert ------------------------------------------------------------------------------------------
def test_a_second_department_corroborates_the_same_alert(store: CaseStore) -> None:
    first = store.record_household_alert(death(["ev-ps"], [PS]))
    assert first.case_opened and not first.updated and first.events_added == 0
    assert stored_events(store, "death-1") == [("ev-ps", PS, "public-security")]
    again = store.record_household_alert(death(["ev-ps", "ev-health"], [PS, HEALTH],
                                               reason="家庭成员死亡(户主, 44岁, 2024-06-20), 公安、卫健报告"))
    assert (again.case_id, again.case_alert_id, again.case_opened) == (first.case_id, first.case_alert_id, False)
    assert not again.duplicate and again.updated and again.events_added == 1 and again.escalated_from is None
    assert stored_events(store, "death-1") == [("ev-ps", PS, "public-security"), ("ev-health", HEALTH, "health")]
    # the same re-emission again, and the first one late: nothing new
    for late in (death(["ev-ps", "ev-health"], [PS, HEALTH]), death(["ev-ps"], [PS])):
        assert store.record_household_alert(late).duplicate
    assert store.counts() == {"cases_open": 1, "evidence": 1}
    [case] = store.list_cases()
    [evidence] = case.evidence
    assert evidence.event_ids == ("ev-ps", "ev-health") and evidence.reason.endswith("公安、卫健报告")
    assert [(e.event_id, e.department, e.source) for e in evidence.events] == [
        ("ev-ps", "public-security", "公安"), ("ev-health", "health", "卫健")]
    assert evidence.departments == ("公安", "卫健")
    [alert] = case.alerts
    assert (alert.status, alert.severity, alert.departments) == ("OPEN", "HIGH", ("公安", "卫健"))
    assert escalations(store) == []
    # `povwatch cases list --json` carries them
    [listed] = json.loads(cases_to_json(store.list_cases()))
    assert listed["evidence"][0]["departments"] == ["公安", "卫健"]
    assert listed["evidence"][0]["events"][1] == {"event_id": "ev-health", "topic": HEALTH, "department": "health",
                                                  "source": "卫健"}


def test_a_higher_severity_re_emission_escalates_the_case_alert(store: CaseStore) -> None:
    def water(severity: str, reason: str) -> dict[str, Any]:
        return {**household_alert("water-1", rule="WATER_UNSAFE", severity=severity, reason=reason),
                "event_ids": ["ev-w"], "event_topics": [WATER]}

    first = store.record_household_alert(water("MEDIUM", "饮水不安全: 水质不达标, 未解决"))
    with Session(store.engine) as session, session.begin():  # the case worker acknowledged it
        session.execute(update(CaseAlert).values(status="ACKNOWLEDGED", acknowledged_by="clerk",
                                                 acknowledged_at=RAISED))
    raised = store.record_household_alert(water("HIGH", "饮水不安全: 水质不达标, 30 天未解决"))
    assert raised.updated and not raised.duplicate and raised.events_added == 0
    assert raised.escalated_from == "MEDIUM" and raised.case_alert_id == first.case_alert_id
    [case] = store.list_cases()
    assert case.max_severity == "HIGH" and store.counts()["evidence"] == 1
    [alert] = case.alerts
    assert (alert.status, alert.severity) == ("OPEN", "HIGH")  # acknowledged before: OPEN again
    assert (case.evidence[0].severity, case.evidence[0].reason) == ("HIGH", "饮水不安全: 水质不达标, 30 天未解决")
    [(by, _, note)] = escalations(store)
    assert by == "casefeed" and note == "WATER_UNSAFE MEDIUM -> HIGH (alert water-1)"
    # the monitor's MEDIUM again (out of order) changes nothing
    assert store.record_household_alert(water("MEDIUM", "饮水不安全: 水质不达标, 未解决")).duplicate
    assert store.list_cases()[0].evidence[0].severity == "HIGH"


def test_worse_after_resolution_is_a_live_alert_again_but_corroboration_is_not(store: CaseStore) -> None:
    first = store.record_household_alert(death(["ev-ps"], [PS], severity="MEDIUM"))
    with Session(store.engine) as session, session.begin():
        session.execute(update(CaseAlert).values(status="RESOLVED", resolved_by="clerk", resolved_at=RAISED))
    # another department confirms the resolved fact: recorded, nothing reopened
    same = store.record_household_alert(death(["ev-ps", "ev-health"], [PS, HEALTH], severity="MEDIUM"))
    assert same.updated and same.events_added == 1 and same.case_alert_id == first.case_alert_id
    assert [(a.status, a.alert_ids) for a in store.list_cases()[0].alerts] == [("RESOLVED", ("death-1",))]
    # a worse fact: a live alert again, the evidence with it, the history says why
    worse = store.record_household_alert(death(["ev-ps", "ev-health"], [PS, HEALTH], severity="HIGH"))
    assert worse.updated and worse.escalated_from == "MEDIUM" and not worse.case_opened
    assert worse.case_alert_id not in (None, first.case_alert_id)
    [case] = store.list_cases()
    assert [(a.status, a.severity, a.alert_ids) for a in case.alerts] == [
        ("RESOLVED", "MEDIUM", ()), ("OPEN", "HIGH", ("death-1",))]
    assert case.max_severity == "HIGH"
    [(_, _, note)] = escalations(store)
    assert note is not None and note.startswith("DEATH_IN_HOUSEHOLD MEDIUM -> HIGH (alert death-1)")


def test_a_worse_fact_after_the_case_was_closed_opens_a_case(store: CaseStore) -> None:
    first = store.record_household_alert(death(["ev-ps"], [PS], severity="MEDIUM"))
    with Session(store.engine) as session, session.begin():
        session.execute(update(CaseAlert).values(status="RESOLVED", resolved_by="clerk", resolved_at=RAISED))
        session.execute(update(Case).values(status="CLOSED"))
    worse = store.record_household_alert(death(["ev-ps"], [PS], severity="HIGH"))
    assert worse.case_opened and worse.case_id != first.case_id and worse.escalated_from == "MEDIUM"
    [case] = store.list_cases(status="OPEN")
    assert [(a.status, a.severity, a.alert_ids) for a in case.alerts] == [("OPEN", "HIGH", ("death-1",))]
    assert [e.alert_id for e in case.evidence] == ["death-1"] and store.counts()["evidence"] == 1


def test_alerts_without_topics_and_topics_filled_in_later(store: CaseStore) -> None:
    store.record_household_alert(death(["ev-ps"], None))  # a v1 alert: no event_topics
    assert stored_events(store, "death-1") == [("ev-ps", None, None)]
    [evidence] = store.list_cases()[0].evidence
    assert evidence.departments == () and evidence.events[0].source == "来源未记录"
    filled = store.record_household_alert(death(["ev-ps"], [PS]))  # the same alert from a v2 monitor
    assert filled.updated and filled.events_added == 0
    assert stored_events(store, "death-1") == [("ev-ps", PS, "public-security")]
    unknown = store.record_household_alert({**household_alert("x1"), "event_topics": ["events.nobody.nothing"]})
    assert not unknown.duplicate
    assert stored_events(store, "x1") == [("ev-x1", "events.nobody.nothing", None)]


def test_a_batch_carrying_an_alert_and_its_re_emission(store: CaseStore) -> None:
    results = store.record_batch([("alerts.household", death(["ev-ps"], [PS], severity="MEDIUM")),
                                  ("alerts.household", death(["ev-ps", "ev-health"], [PS, HEALTH])),
                                  ("alerts.household", death(["ev-ps", "ev-health"], [PS, HEALTH]))])
    assert [(r.case_opened, r.duplicate, r.updated, r.escalated_from) for r in results] == [
        (True, False, False, None), (False, False, True, "MEDIUM"), (False, True, False, None)]
    [case] = store.list_cases()
    assert case.evidence[0].event_ids == ("ev-ps", "ev-health") and case.alerts[0].severity == "HIGH"


def test_a_rival_merging_other_news_first_loses_nothing(store: CaseStore) -> None:
    """Another writer merges health's event between our read and our lock: we merge ours on top of it."""
    store.record_household_alert(death(["ev-ps"], [PS]))
    state = {"fired": False}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE evidence") and not state["fired"]:
            state["fired"] = True
            other = open_database(store.engine.url.render_as_string(hide_password=False))
            try:
                assert other.record_household_alert(death(["ev-ps", "ev-health"], [PS, HEALTH])).events_added == 1
            finally:
                other.close()

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        mine = store.record_household_alert(death(["ev-ps", "ev-cadre"], [PS, CADRE]))
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert state["fired"] and mine.updated and mine.events_added == 1
    [evidence] = store.list_cases()[0].evidence
    assert evidence.event_ids == ("ev-ps", "ev-health", "ev-cadre")
    assert evidence.departments == ("公安", "卫健", "基层干部排查")


def test_a_rival_merging_the_same_news_first_makes_ours_a_duplicate(store: CaseStore) -> None:
    store.record_household_alert(death(["ev-ps"], [PS], severity="MEDIUM"))
    news = death(["ev-ps", "ev-health"], [PS, HEALTH])
    state = {"fired": False}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE evidence") and not state["fired"]:
            state["fired"] = True
            other = open_database(store.engine.url.render_as_string(hide_password=False))
            try:
                assert other.record_household_alert(news).escalated_from == "MEDIUM"
            finally:
                other.close()

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        mine = store.record_household_alert(news)
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert state["fired"] and mine.duplicate and not mine.updated
    assert len(escalations(store)) == 1 and len(stored_events(store, "death-1")) == 2


def test_the_db_keeps_one_row_per_alert_and_event_and_bounds_it(store: CaseStore) -> None:
    from sqlalchemy.exc import IntegrityError

    store.record_household_alert(death(["ev-ps"], [PS]))
    with Session(store.engine) as session:
        session.add(EvidenceEvent(alert_id="death-1", event_id="ev-ps", topic=None, department=None,
                                  received_at=RAISED))
        with pytest.raises(IntegrityError):
            session.commit()
    with pytest.raises(RecordRefused):  # too long an event id: refused on SQLite as on PostgreSQL
        store.record_household_alert({**household_alert("long"), "event_ids": ["e" * 65]})
    assert store.counts()["evidence"] == 1


# --- regional alerts: every rule, villages and townships ----------------------------------------------------------
def test_every_regional_rule_and_a_township_region(store: CaseStore) -> None:
    for rule in sorted(REGIONAL_RULES):
        region = TOWNSHIP if rule == Rule.REGIONAL_RETURNS else VILLAGE
        result = store.record_regional_alert({**regional_alert(f"r-{rule}", region), "rule": rule.value})
        assert not result.duplicate
    cases = {c.household_or_region: c for c in store.list_cases()}
    assert set(cases) == {VILLAGE, TOWNSHIP}
    township = cases[TOWNSHIP]
    assert (township.subject_kind, township.village_code) == ("village", TOWNSHIP)
    assert [a.rule for a in township.alerts] == ["REGIONAL_RETURNS"]
    assert sorted(a.rule for a in cases[VILLAGE].alerts) == sorted(r.value for r in REGIONAL_RULES
                                                                   if r != Rule.REGIONAL_RETURNS)


def test_township_cases_are_scoped_and_filtered_like_villages(store: CaseStore, users: Any) -> None:
    returns = store.record_regional_alert({**regional_alert("ret-1", TOWNSHIP), "rule": "REGIONAL_RETURNS",
                                           "severity": "MEDIUM", "reason": "30 日内 12 人返乡"})
    cases = Cases(store)
    for user, sees in (("town1", True), ("county", True), ("bureau", True), ("vil1", False), ("other", False)):
        assert (returns.case_id in {c.id for c in cases.visible_cases(user)}) is sees, user
    assert [c.id for c in cases.visible_cases("bureau", township=TOWNSHIP, rule="REGIONAL_RETURNS")] == [
        returns.case_id]
    assert [c.id for c in cases.visible_cases("bureau", county=TOWNSHIP[:6], rule="regional_returns")] == [
        returns.case_id]
    assert cases.visible_cases("bureau", county="652722", rule="REGIONAL_RETURNS") == []
    detail = cases.case_detail("town1", returns.case_id)
    assert detail.case.household_or_region == TOWNSHIP and detail.household is None
    assert [a.rule for a in detail.alerts] == ["REGIONAL_RETURNS"]
    for outsider in ("vil1", "other"):
        with pytest.raises(NotInRegion):
            cases.case_detail(outsider, returns.case_id)


# --- deadlines ----------------------------------------------------------------------------------------------------
def _age(store: CaseStore, case_alert_id: int, days: int) -> None:
    """Make the case alert `days` days old (it opened `days` days before now)."""
    with Session(store.engine) as session, session.begin():
        when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        session.execute(update(CaseAlert).where(CaseAlert.id == case_alert_id).values(opened_at=when))


def test_overdue_alerts_from_the_case_db(store: CaseStore) -> None:
    today = dt.datetime.now(DEFAULT_ZONE).date()
    late = store.record_household_alert(household_alert("m1"))
    acked = store.record_household_alert(household_alert("d1", rule="DISASTER_LOSS"))
    fresh = store.record_household_alert(household_alert("s1", rule="SCHOOL_DROPOUT"))
    assert late.case_alert_id is not None and acked.case_alert_id is not None and fresh.case_alert_id is not None
    _age(store, late.case_alert_id, 20)
    _age(store, acked.case_alert_id, 40)
    _age(store, fresh.case_alert_id, 15)  # due today: not overdue yet
    with Session(store.engine) as session, session.begin():
        alert = session.get(CaseAlert, acked.case_alert_id)
        assert alert is not None
        alert.status, alert.acknowledged_by, alert.acknowledged_at = "ACKNOWLEDGED", "clerk", dt.datetime.now(dt.UTC)
    assert count_overdue(store, today=today, verify_days=15, zone=DEFAULT_ZONE) == 1
    found = store.run(lambda s: deadlines(s, today=today, verify_days=15, zone=DEFAULT_ZONE), "read")
    assert found == {late.case_alert_id: (today - dt.timedelta(days=5), 5), fresh.case_alert_id: (today, 0)}
    assert count_overdue(store, today=today, verify_days=30, zone=DEFAULT_ZONE) == 0
    # the acknowledged alert escalates: OPEN again, its clock restarts at the escalation (not overdue)
    assert store.record_household_alert(household_alert("d2", rule="DISASTER_LOSS", severity="HIGH")
                                        ).escalated_from == "MEDIUM"
    assert count_overdue(store, today=today, verify_days=15, zone=DEFAULT_ZONE) == 1
    assert count_overdue(store, today=today + dt.timedelta(days=16), verify_days=15, zone=DEFAULT_ZONE) == 3
    # a closed case's alerts are resolved: nothing is overdue
    with Session(store.engine) as session, session.begin():
        session.execute(update(CaseAlert).values(status="RESOLVED"))
        session.execute(update(Case).values(status="CLOSED"))
    assert count_overdue(store, today=today + dt.timedelta(days=99), verify_days=15, zone=DEFAULT_ZONE) == 0


def test_worklist_and_case_page_show_what_is_overdue_to_the_region_only(store: CaseStore, users: Any) -> None:
    mine = store.record_household_alert(death(["ev-ps", "ev-health"], [PS, HEALTH]))
    assert mine.case_alert_id is not None
    _age(store, mine.case_alert_id, 18)
    cases = Cases(store, verify_days=15)
    [line] = [c for c in cases.visible_cases("vil1") if c.id == mine.case_id]
    assert (line.overdue_alerts, line.overdue_days) == (1, 3)
    detail = cases.case_detail("vil1", mine.case_id)
    [alert] = [a for a in detail.alerts if a.id == mine.case_alert_id]
    assert (alert.overdue_days, alert.corroboration, alert.departments) == (3, "公安、卫健 印证", ("公安", "卫健"))
    assert alert.due_on == dt.datetime.now(DEFAULT_ZONE).date() - dt.timedelta(days=3)
    assert Cases(store, verify_days=30).visible_cases("vil1")[0].overdue_days == 0
    # another region's user sees neither the case nor its deadline nor its departments
    assert mine.case_id not in {c.id for c in cases.visible_cases("other")}
    with pytest.raises(NotInRegion):
        cases.case_detail("other", mine.case_id)
    with pytest.raises(NotInRegion):
        cases.acknowledge_alert("other", mine.case_alert_id)
    # acknowledging ends it
    assert cases.acknowledge_alert("vil1", mine.case_alert_id).overdue_days == 0
    assert cases.visible_cases("vil1")[0].overdue_days == 0


def test_report_counts_township_cases_by_county(store: CaseStore) -> None:
    from services.cases.report import Period, PeriodKind, compute
    from services.cases.report_query import load_rows

    store.record_regional_alert({**regional_alert("ret-1", TOWNSHIP), "rule": "REGIONAL_RETURNS"})
    store.record_regional_alert(regional_alert("dis-1", VILLAGE))
    with Session(store.engine) as session, session.begin():
        session.execute(update(Evidence).values(received_at=dt.datetime(2025, 3, 10, 4, tzinfo=dt.UTC)))
        session.execute(update(Case).values(opened_at=dt.datetime(2025, 3, 10, 4, tzinfo=dt.UTC)))
    march = Period(PeriodKind.MONTHLY, 2025, 3)
    cases, evidence, steps = load_rows(store, since=march.previous().start, until=march.end)
    assert sorted((c.county, c.category) for c in cases) == [(VILLAGE[:6], "TOWNSHIP"), (VILLAGE[:6], "VILLAGE")]
    report = compute(march, dt.date(2025, 7, 1), cases=cases, evidence=evidence, steps=steps)
    lines = {(line.county, line.category): line.values for line in report.lines}
    assert lines[VILLAGE[:6], "TOWNSHIP"]["new_alerts"] == 1 and lines[VILLAGE[:6], "VILLAGE"]["open_cases"] == 1
