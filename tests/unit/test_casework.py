"""Issue #11's case-side pure parts: department names (services/casedb/departments.py), deadlines
(services/cases/deadlines.py), region labels (services/cases/regions.py), the desk's rule labels, the case page's
text rendering; and, on a SQLite case DB, the casefeed's povwatch_cases_overdue gauge and
`povwatch cases list [--overdue] [--json]`."""
from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from schemas.alerts import Rule
from schemas.catalog import INTAKE_CHANNELS, monitored_feeds
from schemas.errors import DatabaseUnavailable
from services.casedb.database import open_database
from services.casedb.departments import (
    CHANNEL_NAMES,
    DEPARTMENT_NAMES,
    UNKNOWN_SOURCE,
    corroboration,
    department_of_topic,
    event_source,
    source_label,
    sources_of,
)
from services.casedb.models import CaseAlert
from services.casedb.store import CaseStore
from services.casefeed.overdue_gauge import OVERDUE, OverdueGauge
from services.cases.deadlines import AlertClock, clock_start, days_overdue, due_on, overdue
from services.cases.regions import region_kind, subject_label
from services.desk.forms import RULE_LABELS, FormError, parse_filters
from tests.casedb_behaviour import household_alert, regional_alert

ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
UTC = dt.UTC


# --- departments ----------------------------------------------------------------------------------------------
def test_every_department_and_channel_of_the_catalogue_has_a_chinese_name() -> None:
    for feed in monitored_feeds():
        assert feed.department in DEPARTMENT_NAMES, feed.department
        assert department_of_topic(feed.topic) == feed.department
    assert {c.feed for c in INTAKE_CHANNELS} == set(CHANNEL_NAMES)
    assert (DEPARTMENT_NAMES["public-security"], DEPARTMENT_NAMES["health"], DEPARTMENT_NAMES["intake"]) == (
        "公安", "卫健", "群众及干部报告")


def test_source_labels() -> None:
    assert source_label("public-security", "events.public-security.registration-change") == "公安"
    assert source_label("intake", "events.intake.cadre-visit") == "基层干部排查"
    assert source_label("intake", "events.intake.self-declaration") == "农户自主申报"
    assert source_label("intake", "events.intake.new-channel") == "群众及干部报告"
    assert source_label("cac", "events.cac.public-opinion") == "网信"
    assert source_label("someone-new", None) == "someone-new"
    assert source_label(None, None) == source_label(None, "events.nobody.x") == UNKNOWN_SOURCE
    assert department_of_topic("events.nobody.x") is None and department_of_topic(None) is None


def test_corroboration_needs_two_distinct_departments() -> None:
    events = [event_source("e1", "events.public-security.registration-change", "public-security"),
              event_source("e2", "events.health.chronic-disease", "health"),
              event_source("e3", "events.public-security.traffic-accident", "public-security"),
              event_source("e4", None, None)]
    assert sources_of(events) == ("公安", "卫健")  # each once, unknown ones left out
    assert corroboration(sources_of(events)) == "公安、卫健 印证"
    assert corroboration(["公安", "公安"]) is None and corroboration([]) is None
    assert corroboration(["公安", "卫健", "基层干部排查"]) == "公安、卫健、基层干部排查 印证"


# --- deadlines ------------------------------------------------------------------------------------------------
def clock(opened: dt.datetime, status: str = "OPEN", **kw: object) -> AlertClock:
    return AlertClock(case_alert_id=1, case_id=1, status=status, opened_at=opened, **kw)  # type: ignore[arg-type]


def test_an_alert_is_due_verify_days_after_the_local_day_it_opened() -> None:
    # 1 March 17:30 UTC is 2 March 01:30 in Bortala: the clock starts on 2 March
    alert = clock(dt.datetime(2025, 3, 1, 17, 30, tzinfo=UTC))
    assert due_on(alert, verify_days=15, zone=ZONE) == dt.date(2025, 3, 17)
    assert days_overdue(alert, dt.date(2025, 3, 17), verify_days=15, zone=ZONE) == 0
    assert days_overdue(alert, dt.date(2025, 3, 18), verify_days=15, zone=ZONE) == 1
    assert days_overdue(alert, dt.date(2025, 4, 1), verify_days=15, zone=ZONE) == 15
    assert days_overdue(alert, dt.date(2025, 4, 1), verify_days=30, zone=ZONE) == 0
    assert days_overdue(alert, dt.date(2025, 3, 1), verify_days=15, zone=ZONE) == 0  # before it opened
    assert due_on(clock(dt.datetime(2025, 3, 1, 15, 59, tzinfo=UTC)), verify_days=15, zone=UTC) == dt.date(2025, 3, 16)
    with pytest.raises(ValueError):
        due_on(alert, verify_days=0, zone=ZONE)


def test_only_an_open_alert_of_an_open_case_has_a_running_clock() -> None:
    opened = dt.datetime(2025, 1, 1, 4, tzinfo=UTC)
    late = dt.date(2025, 6, 1)
    for stopped in (clock(opened, "ACKNOWLEDGED", acknowledged_at=opened), clock(opened, "RESOLVED"),
                    clock(opened, case_open=False)):
        assert clock_start(stopped) is None and due_on(stopped, verify_days=15, zone=ZONE) is None
        assert days_overdue(stopped, late, verify_days=15, zone=ZONE) == 0
    # acknowledged on 10 January, OPEN again by an escalation on 1 May: due 16 May
    reopened = clock(opened, acknowledged_at=dt.datetime(2025, 1, 10, tzinfo=UTC),
                     reopened_at=dt.datetime(2025, 5, 1, 4, tzinfo=UTC))
    assert due_on(reopened, verify_days=15, zone=ZONE) == dt.date(2025, 5, 16)
    assert days_overdue(reopened, late, verify_days=15, zone=ZONE) == 16
    # no escalation found: from the acknowledgement
    assert due_on(clock(opened, acknowledged_at=dt.datetime(2025, 1, 10, 4, tzinfo=UTC)), verify_days=15,
                  zone=ZONE) == dt.date(2025, 1, 25)


def test_overdue_lists_the_overdue_ones_only() -> None:
    day = dt.datetime(2025, 3, 1, 4, tzinfo=UTC)
    alerts = [AlertClock(7, 1, "OPEN", day), AlertClock(8, 1, "OPEN", day + dt.timedelta(days=10)),
              AlertClock(9, 2, "ACKNOWLEDGED", day, acknowledged_at=day), AlertClock(10, 3, "OPEN", day)]
    assert overdue(alerts, dt.date(2025, 3, 20), verify_days=15, zone=ZONE) == {7: 4, 10: 4}
    assert overdue([], dt.date(2025, 3, 20), verify_days=15, zone=ZONE) == {}


# --- regions and labels ---------------------------------------------------------------------------------------
def test_region_and_subject_labels() -> None:
    assert [region_kind(c) for c in ("652701100201", "652701100", "652701", "6527", "65x7", "")] == [
        "村", "乡镇", "县(市)", "州", "区域", "区域"]
    assert subject_label("household", "H-1") == "户 H-1"
    assert subject_label("village", "652701100201") == "村 652701100201"
    assert subject_label("village", "652701100") == "乡镇 652701100"


def test_every_rule_has_a_desk_label_and_is_a_worklist_filter() -> None:
    assert set(RULE_LABELS) == {r.value for r in Rule}
    for rule in Rule:
        assert parse_filters({"rule": rule.value}).rule == rule.value
    with pytest.raises(FormError):
        parse_filters({"rule": "NO_SUCH_RULE"})
    assert parse_filters({"township": "652701100"}).township == "652701100"


# --- on a SQLite case DB: the gauge and the command line --------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{tmp_path / 'cases.db'}")
    yield s
    s.close()


def _age_all(store: CaseStore, days: int) -> None:
    with Session(store.engine) as session, session.begin():
        session.execute(update(CaseAlert).values(opened_at=dt.datetime.now(UTC) - dt.timedelta(days=days)))


def test_the_gauge_counts_at_once_then_every_minute_and_keeps_its_value_in_an_outage(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a1"))
    store.record_household_alert(household_alert("a2", "652701000000000002"))
    _age_all(store, 20)
    ticks = [1000.0]
    gauge = OverdueGauge(store, verify_days=15, zone=ZONE, clock=lambda: dt.datetime.now(UTC), every=60.0,
                         monotonic=lambda: ticks[0])
    OVERDUE.set(-1)
    assert gauge.due() and gauge.refresh() == 2 and OVERDUE._value.get() == 2
    assert not gauge.due()
    store.record_household_alert(household_alert("a3", "652701000000000003"))
    _age_all(store, 20)
    ticks[0] += 59.0
    assert not gauge.due()
    ticks[0] += 1.0
    assert gauge.due() and gauge.refresh() == 3 and OVERDUE._value.get() == 3

    class Down:
        def run(self, *args: object) -> int:
            raise DatabaseUnavailable("case database: connection refused")

    outage = OverdueGauge(Down(), verify_days=15, zone=ZONE, clock=lambda: dt.datetime.now(UTC))  # type: ignore[arg-type]
    assert outage.refresh() is None and OVERDUE._value.get() == 3  # kept


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, *args: str) -> str:
    from services.cli import main

    monkeypatch.setenv("POVWATCH_CASE_DB", url)
    monkeypatch.setenv("POVWATCH_CASE_VERIFY_DAYS", "15")
    assert main(["cases", "list", *args]) == 0
    return capsys.readouterr().out


def test_cases_list_overdue(store: CaseStore, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    late = store.record_household_alert({**household_alert("death-1", rule="DEATH_IN_HOUSEHOLD", severity="HIGH"),
                                         "event_ids": ["e-ps", "e-h"], "event_topics": [
                                             "events.public-security.registration-change",
                                             "events.health.chronic-disease"]})
    _age_all(store, 19)
    store.record_household_alert(household_alert("fresh", "652701000000000002"))
    store.record_regional_alert({**regional_alert("ret-1", "652701100"), "rule": "REGIONAL_RETURNS"})
    text = _cli(monkeypatch, capsys, url, "--overdue")
    lines = text.splitlines()
    assert lines[0].split() == ["CASE", "SUBJECT", "REGION", "ALERT", "RULE", "SEVERITY", "OPENED", "DUE", "OVERDUE",
                                "DEPARTMENTS"]
    assert len(lines) == 3 and lines[2].split()[:6] == [str(late.case_id), "652701000000000001", "652701100201",
                                                        str(late.case_alert_id), "DEATH_IN_HOUSEHOLD", "HIGH"]
    assert lines[2].split()[-3:] == ["4", "day(s)", "公安、卫健"]
    listed = json.loads(_cli(monkeypatch, capsys, url, "--overdue", "--json"))
    assert [c["id"] for c in listed] == [late.case_id]
    [alert] = listed[0]["alerts"]
    assert (alert["overdue_days"], alert["departments"]) == (4, ["公安", "卫健"])
    assert alert["due_on"] == (dt.datetime.now(ZONE).date() - dt.timedelta(days=4)).isoformat()
    assert listed[0]["evidence"][0]["departments"] == ["公安", "卫健"] and "workflow" in listed[0]
    # without --overdue: every case, each alert with its deadline; the township case among them
    everything = json.loads(_cli(monkeypatch, capsys, url, "--json"))
    assert len(everything) == 3 and {c["household_or_region"] for c in everything} >= {"652701100"}
    assert sorted(a["overdue_days"] for c in everything for a in c["alerts"]) == [0, 0, 4]
    table = _cli(monkeypatch, capsys, url)
    assert "652701100 " in table and "REGIONAL_RETURNS" in table
    # nothing overdue with a longer deadline
    monkeypatch.setenv("POVWATCH_CASE_VERIFY_DAYS", "30")
    from services.cli import main

    assert main(["cases", "list", "--overdue"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(no overdue alerts)"
