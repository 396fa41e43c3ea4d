"""The case operations (services.cases.store.Cases), written once for every backend the case DB runs on.

Not collected on its own (the name does not start with test_). Each backend's module defines a `store` fixture - an
open CaseStore on empty tables - and a `tmp_path`, and imports these tests by name, as tests/casedb_behaviour.py
does: they run on SQLite (tests/unit/test_cases_store.py) and on PostgreSQL (tests/integration/
test_cases_postgres.py).

The world: a roster of three households imported through `Cases.import_roster` (names stay in the case DB), users
of every role and region, alerts recorded through the CaseStore as the casefeed records them.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from schemas.codec import default_codec
from schemas.errors import ConfigError
from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.casedb.models import (
    Case,
    CaseAlert,
    CaseHistory,
    ComparisonAnswer,
    ComparisonRequest,
    ComparisonTarget,
    Household,
    Member,
    OutboxMessage,
    User,
)
from services.casedb.store import CaseStore
from services.cases.store import Cases
from services.cases.users import hash_password
from tests.unit.doubles import TEST_KEY, make_id, write_csv

TODAY = dt.date(2024, 8, 1)
NOW = dt.datetime(2024, 8, 1, 4, 0, tzinfo=dt.UTC)  # 12:00 in Bortala
CASES_OPENED = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)  # every case of these tests (World.alert)
V1, V2, V3 = "652701100201", "652701100202", "652701200301"  # two villages of township 652701100, one of 652701200
HA, HB, HC = "BL-A-0001", "BL-B-0002", "BL-C-0003"
PASSWORD = "correct horse battery"
HEADER = ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态", "劳动能力",
          "上年人均纯收入", "家庭人口数"]
A_HEAD, A_WIFE = make_id("652701", "19680305", 11), make_id("652701", "19700811", 22)
B_HEAD, C_HEAD = make_id("652701", "19500101", 33), make_id("652701", "19600101", 55)


def roster_rows() -> list[list[str]]:
    return [
        [HA, "王建国", A_HEAD, "男", "户主", V1, "一般农户", "未纳入", "有劳动能力", "7200", "2"],
        [HA, "李秀兰", A_WIFE, "女", "配偶", V1, "一般农户", "未纳入", "有劳动能力", "7200", "2"],
        [HB, "马桂英", B_HEAD, "男", "户主", V1, "脱贫不稳定户", "监测中", "无劳动能力", "5100", "1"],
        [HC, "张三", C_HEAD, "男", "户主", V3, "边缘易致贫户", "未纳入", "弱劳动能力", "8800", "1"],
        ["BL-X", "坏行", "123", "男", "户主", V1, "一般农户", "未纳入", "有劳动能力", "1", "1"],  # bad ID: rejected
    ]


_HASH: list[str] = []


def _one_hash() -> str:
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    return _HASH[0]


class World:
    def __init__(self, store: CaseStore, tmp_path: Path) -> None:
        self.store = store
        self.now = NOW
        self.cases = Cases(store, clock=lambda: self.now, pseudonym_key=lambda: TEST_KEY)
        self.counts = self.cases.import_roster(write_csv(tmp_path / "roster.csv", [HEADER, *roster_rows()]))
        self.cases.add_user("county", "county", V1[:6], PASSWORD)
        stored = _one_hash()  # the others share one argon2id hash: hashing is slow by design
        with Session(store.engine) as session, session.begin():
            for name, role, region in (("vil1", "village", V1), ("vil2", "village", V2), ("vil3", "village", V3),
                                       ("town1", "township", V1[:9]), ("town2", "township", V3[:9]),
                                       ("bureau", "bureau", "6527")):
                session.add(User(name=name, role=role, region=region, password_hash=stored, created_at=NOW))
        self._n = 0

    def alert(self, household: str, village: str, *, rule: str = "MEDICAL_EXPENSE", severity: str = "MEDIUM",
              reason: str = "住院自付 12,000 元，超过 10,000 元") -> int:
        """Record an alert as the casefeed does; make sure its case alert exists (the alert lifecycle's)."""
        self._n += 1
        result = self.store.record_household_alert({
            "alert_id": f"al-{self._n}", "household_id": household, "village_code": village, "rule": rule,
            "severity": severity, "reason": reason, "event_ids": [f"ev-{self._n}"],
            "occurred_at": dt.date(2024, 7, 20), "raised_at": dt.datetime(2024, 7, 21, tzinfo=dt.UTC)})
        with Session(self.store.engine) as session, session.begin():
            live = session.scalar(select(CaseAlert).where(CaseAlert.case_id == result.case_id,
                                                          CaseAlert.rule == rule, CaseAlert.status != "RESOLVED"))
            if live is None:
                session.add(CaseAlert(case_id=result.case_id, household_id=household, rule=rule, status="OPEN",
                                      severity=severity, opened_at=NOW, updated_at=NOW))
            # the case as opened before the steps these tests date in July 2024 (none may precede the opening)
            session.execute(update(Case).where(Case.id == result.case_id).values(opened_at=CASES_OPENED))
        return result.case_id

    def income(self, household: str, village: str, per_capita: str, *, year: int = 2023,
               updated_at: dt.datetime = NOW) -> str:
        """The household's latest income as the statistics survey team reported it: its profile (profiles.household,
        as the casefeed stores it), which risk elimination holds against the county's line (P70)."""
        from services.cases.profiles import record_profiles

        [outcome] = record_profiles(self.store, [(household, {
            "household_id": household, "village_code": village, "facts": [], "income_year": year,
            "income_per_capita": Decimal(per_capita), "updated_at": updated_at})])
        return outcome

    def alert_ids(self, case_id: int) -> list[int]:
        with Session(self.store.engine) as session:
            return list(session.scalars(select(CaseAlert.id).where(CaseAlert.case_id == case_id)
                                        .order_by(CaseAlert.id)))

    def household(self, household_id: str) -> Household:
        with Session(self.store.engine, expire_on_commit=False) as session:
            h = session.get(Household, household_id)
            assert h is not None
            return h

    def history(self, case_id: int) -> list[tuple[str, str | None, str, dt.date]]:
        with Session(self.store.engine) as session:
            return [(h.kind, h.step, h.by_user, h.on_day) for h in session.scalars(
                select(CaseHistory).where(CaseHistory.case_id == case_id).order_by(CaseHistory.id))]

    def outbox(self) -> list[tuple[str, bytes, dict[str, Any]]]:
        with Session(self.store.engine) as session:
            return [(m.topic, m.key, default_codec().decode(m.value, expect="povwatch.registry.HouseholdStatus").record)
                    for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]

    def include(self, case_id: int, *, start: dt.date = dt.date(2024, 7, 1)) -> None:
        """Carry a case through the six ones, APPLY to LABEL."""
        c = self.cases
        c.advance("vil1", case_id, "APPLY", on=start, note="户主申请", authorised=True)
        c.advance("vil1", case_id, "PUBLIC_NOTICE", on=start + dt.timedelta(days=1), note="村委会公示")
        c.advance("town1", case_id, "TOWNSHIP_VERIFY", on=start + dt.timedelta(days=6), note="入户核实")
        c.advance("county", case_id, "COUNTY_CONFIRM", on=start + dt.timedelta(days=7))
        c.advance("county", case_id, "DATA_COMPARE", on=start + dt.timedelta(days=8))
        c.advance("county", case_id, "LABEL", on=start + dt.timedelta(days=9), note="县级公告")


@pytest.fixture
def world(store: CaseStore, tmp_path: Path) -> World:
    return World(store, tmp_path)


def test_roster_import_keeps_names_in_the_case_db_and_upserts(world: World, tmp_path: Path) -> None:
    counts = world.counts
    assert (counts.read, counts.rejected, counts.households_added, counts.members_added) == (5, 1, 3, 4)
    assert counts.rejects[0][0] == 6 and "id_number" in "; ".join(counts.rejects[0][1])
    with Session(world.store.engine) as session:
        names = {m.name: (m.household_id, m.relation, m.sex) for m in session.scalars(select(Member))}
        a = session.get(Household, HA)
        assert a is not None
        assert (a.village_code, a.category, a.monitoring_status, a.labour_capacity, a.household_size) == (
            V1, "ORDINARY", "NOT_INCLUDED", "ABLE", 2)
        assert a.per_capita_income == Decimal("7200.00") and a.head_person_key is not None
    assert names == {"王建国": (HA, "户主", "M"), "李秀兰": (HA, "配偶", "F"), "马桂英": (HB, "户主", "M"),
                     "张三": (HC, "户主", "M")}
    again = world.cases.import_roster(write_csv(tmp_path / "same.csv", [HEADER, *roster_rows()]))
    assert (again.households_unchanged, again.members_unchanged, again.households_added) == (3, 4, 0)
    rows = roster_rows()[:4]
    rows[3][8] = "有劳动能力"  # household C gains labour capacity
    rows[1][1] = "李秀英"      # a name corrected
    changed = world.cases.import_roster(write_csv(tmp_path / "changed.csv", [HEADER, *rows]))
    assert (changed.households_updated, changed.members_updated, changed.rejected) == (1, 1, 0)
    assert world.household(HC).labour_capacity == "ABLE"


def test_a_roster_import_after_label_keeps_the_decided_status_unless_the_export_changed(world: World,
                                                                                      tmp_path: Path) -> None:
    """The case DB follows the monitor's rule (roster vs registry.household-status): the same export imported again
    after a LABEL says nothing later than the label; an export that changed the household since is the later word."""
    case_id = world.alert(HA, V1)
    world.now = NOW + dt.timedelta(hours=1)
    world.include(case_id)
    assert (world.household(HA).monitoring_status, world.household(HA).category) == ("MONITORING", "SUDDEN_HARDSHIP")
    world.now = NOW + dt.timedelta(hours=2)
    same = world.cases.import_roster(write_csv(tmp_path / "same.csv", [HEADER, *roster_rows()]))
    assert (same.households_unchanged, same.households_updated) == (3, 0)
    assert (world.household(HA).monitoring_status, world.household(HA).category) == ("MONITORING", "SUDDEN_HARDSHIP")
    assert [a.step for a in world.cases.case_detail("vil1", case_id).allowed] == ["NOMINATE_NOTICE"]  # elimination
    world.now = NOW + dt.timedelta(hours=3)
    rows = roster_rows()
    rows[0][9] = rows[1][9] = "7600"  # the bureau's newer export: A's income changed, its status still 未纳入
    newer = world.cases.import_roster(write_csv(tmp_path / "newer.csv", [HEADER, *rows]))
    assert newer.households_updated == 1
    assert (world.household(HA).monitoring_status, world.household(HA).per_capita_income) == (
        "NOT_INCLUDED", Decimal("7600.00"))
    world.now = NOW + dt.timedelta(hours=4)
    rows[0][7] = rows[1][7] = "监测中"  # and a status-only change after that import is the export's too
    assert world.cases.import_roster(write_csv(tmp_path / "later.csv", [HEADER, *rows])).households_updated == 1
    assert world.household(HA).monitoring_status == "MONITORING"


def test_publish_status_queues_each_labelled_households_latest_decision(world: World) -> None:
    """`povwatch cases publish-status` (after upgrading): the status each household's latest deciding step set,
    timed when it was recorded, whatever the households row says now; households without one are not written."""
    from services.cases.status_backfill import queue_decided_statuses

    case_id = world.alert(HA, V1)
    world.now = NOW + dt.timedelta(hours=1)
    world.include(case_id)
    with Session(world.store.engine) as session, session.begin():
        session.execute(delete(OutboxMessage))  # published long ago, to registry.households
        row = session.get(Household, HA)
        assert row is not None
        row.monitoring_status = "NOT_INCLUDED"  # and undone in the case DB by an import of the old release
    later = NOW + dt.timedelta(days=1)
    assert queue_decided_statuses(world.store, default_codec(), later) == 1
    assert world.outbox() == [("registry.household-status", HA.encode(), {
        "household_id": HA, "monitoring_status": "MONITORING", "category": "SUDDEN_HARDSHIP",
        "decided_at": NOW + dt.timedelta(hours=1), "case_id": case_id, "step": "LABEL"})]
    assert queue_decided_statuses(world.store, default_codec(), later) == 1  # again: the same record, harmless


def test_inclusion_to_label_then_risk_elimination_then_re_entry(world: World) -> None:
    case_id = world.alert(HA, V1)
    c = world.cases
    detail = c.case_detail("vil1", case_id)
    assert [m.name for m in detail.members] == ["王建国", "李秀兰"]
    assert [(a.step, a.refusal) for a in detail.allowed] == [("APPLY", None)]
    assert detail.alerts[0].evidence[0].reason == "住院自付 12,000 元，超过 10,000 元"
    world.include(case_id)
    assert world.history(case_id) == [
        ("STEP", "APPLY", "vil1", dt.date(2024, 7, 1)), ("AUTHORISE", "APPLY", "vil1", dt.date(2024, 7, 1)),
        ("STEP", "PUBLIC_NOTICE", "vil1", dt.date(2024, 7, 2)),
        ("STEP", "TOWNSHIP_VERIFY", "town1", dt.date(2024, 7, 7)),
        ("STEP", "COUNTY_CONFIRM", "county", dt.date(2024, 7, 8)),
        ("STEP", "DATA_COMPARE", "county", dt.date(2024, 7, 9)), ("STEP", "LABEL", "county", dt.date(2024, 7, 10))]
    h = world.household(HA)
    assert (h.monitoring_status, h.category) == ("MONITORING", "SUDDEN_HARDSHIP")  # an ORDINARY household
    [(topic, key, record)] = world.outbox()
    # the decided status on a topic of its own (registry.households is the roster load's alone); no names
    assert (topic, key) == ("registry.household-status", HA.encode())
    assert record == {"household_id": HA, "monitoring_status": "MONITORING", "category": "SUDDEN_HARDSHIP",
                      "decided_at": NOW, "case_id": case_id, "step": "LABEL"}

    # the alert is still open and HIGH? no: MEDIUM, so elimination may start on the same case - once the income
    # is at the county's line (P70: the roster's 7200 counts as 2023's, below 9000)
    [summary] = c.visible_cases("vil1", step="LABEL")
    assert (summary.id, summary.workflow, summary.monitoring_status) == (case_id, "INCLUSION", "MONITORING")
    with pytest.raises(StepRefused, match="人均纯收入 7200 元，低于 2023 年本县标准 9000 元"):
        c.advance("vil1", case_id, "NOMINATE_NOTICE", on=dt.date(2024, 7, 20))
    world.income(HA, V1, "9000.00")
    c.advance("vil1", case_id, "NOMINATE_NOTICE", on=dt.date(2024, 7, 20), note="收入稳定")
    c.advance("town1", case_id, "TOWNSHIP_VERIFY", on=dt.date(2024, 7, 20))  # no 5-day rule for elimination
    c.advance("county", case_id, "COUNTY_CONFIRM", on=dt.date(2024, 7, 25))
    done = c.advance("county", case_id, "ANNOUNCE_LABEL", on=dt.date(2024, 7, 30), note="风险消除公告")
    assert done.case.status == "CLOSED" and done.allowed == ()
    assert all(a.status == "RESOLVED" and a.resolved_by == "county" for a in done.alerts)
    assert world.household(HA).monitoring_status == "RISK_ELIMINATED"
    records = [r for _, _, r in world.outbox()]
    assert [(r["monitoring_status"], r["category"]) for r in records] == [
        ("MONITORING", "SUDDEN_HARDSHIP"), ("RISK_ELIMINATED", "SUDDEN_HARDSHIP")]
    assert world.history(case_id)[-2:] == [("STEP", "ANNOUNCE_LABEL", "county", dt.date(2024, 7, 30)),
                                           ("RESOLVE", None, "county", dt.date(2024, 7, 30))]

    # a later alert opens a new case: the household may APPLY again; its history is kept
    again = world.alert(HA, V1, rule="DISASTER_LOSS")
    assert again != case_id
    detail = c.case_detail("vil1", again)
    assert [(a.step, a.refusal) for a in detail.allowed] == [("APPLY", None)]
    assert {h.case_id for h in detail.history} == {case_id} and len(detail.history) == 12
    c.advance("vil1", again, "APPLY", note="再次申请")
    assert c.case_detail("vil1", again).case.step == "APPLY"


def test_label_keeps_a_focus_category_or_takes_the_one_given(world: World) -> None:
    case_c = world.alert(HC, V3)
    c = world.cases
    c.advance("vil3", case_c, "APPLY", on=dt.date(2024, 7, 1), authorised=True)
    c.advance("vil3", case_c, "PUBLIC_NOTICE", on=dt.date(2024, 7, 1))
    c.advance("town2", case_c, "TOWNSHIP_VERIFY", on=dt.date(2024, 7, 6))
    c.advance("county", case_c, "COUNTY_CONFIRM", on=dt.date(2024, 7, 6))
    c.advance("bureau", case_c, "DATA_COMPARE", on=dt.date(2024, 7, 6))  # the bureau may compare
    with pytest.raises(ConfigError, match="--category 'POOR'"):
        c.advance("county", case_c, "LABEL", category="POOR")
    c.advance("county", case_c, "LABEL", on=dt.date(2024, 7, 7))
    assert (world.household(HC).category, world.household(HC).monitoring_status) == ("MARGINAL", "MONITORING")

    case_a = world.alert(HA, V1)
    world.include(case_a)  # ORDINARY -> SUDDEN_HARDSHIP by default; tested above. Now with --category:
    world.income(HA, V1, "9000")  # the income at the line (P70), so the category is what is refused
    with pytest.raises(StepRefused, match="--category is given at LABEL only"):
        c.advance("vil1", case_a, "NOMINATE_NOTICE", category="MARGINAL")


def test_label_takes_the_category_given(world: World) -> None:
    case_a = world.alert(HA, V1)
    c = world.cases
    c.advance("vil1", case_a, "APPLY", on=dt.date(2024, 7, 1), authorised=True)
    c.advance("vil1", case_a, "PUBLIC_NOTICE", on=dt.date(2024, 7, 1))
    c.advance("town1", case_a, "TOWNSHIP_VERIFY", on=dt.date(2024, 7, 6))
    c.advance("county", case_a, "COUNTY_CONFIRM", on=dt.date(2024, 7, 6))
    c.advance("county", case_a, "DATA_COMPARE", on=dt.date(2024, 7, 6))
    c.advance("county", case_a, "LABEL", on=dt.date(2024, 7, 7), category="unstable_lifted")
    assert world.household(HA).category == "UNSTABLE_LIFTED"


def test_five_day_notice_and_authorisation_in_the_store(world: World) -> None:
    case_id = world.alert(HA, V1)
    c = world.cases
    c.advance("vil1", case_id, "APPLY", on=dt.date(2024, 7, 1))  # no signed authorisation yet
    c.advance("vil1", case_id, "PUBLIC_NOTICE", on=dt.date(2024, 7, 2))
    with pytest.raises(StepRefused) as info:
        c.advance("town1", case_id, "TOWNSHIP_VERIFY", on=dt.date(2024, 7, 6))
    assert str(info.value) == (f"case {case_id}: TOWNSHIP_VERIFY refused: the public notice of 2024-07-02 has stood "
                               "4 day(s); it must stand 5 days (TOWNSHIP_VERIFY from 2024-07-07)")
    c.advance("town1", case_id, "TOWNSHIP_VERIFY", on=dt.date(2024, 7, 7))
    with pytest.raises(StepRefused, match="COUNTY_CONFIRM on 2024-07-06 would precede the last step, "
                                          "TOWNSHIP_VERIFY on 2024-07-07"):
        c.advance("county", case_id, "COUNTY_CONFIRM", on=dt.date(2024, 7, 6))
    c.advance("county", case_id, "COUNTY_CONFIRM", on=dt.date(2024, 7, 8))
    with pytest.raises(StepRefused, match="signed authorisation .* is not on file"):
        c.advance("county", case_id, "DATA_COMPARE", on=dt.date(2024, 7, 9))
    with pytest.raises(StepRefused, match=r"--on 2024-08-02 is in the future \(today is 2024-08-01\)"):
        c.advance("county", case_id, "DATA_COMPARE", on=dt.date(2024, 8, 2))
    strict = Cases(world.store, clock=lambda: NOW, notice_days=10)  # POVWATCH_CASE_NOTICE_DAYS=10
    assert strict.case_detail("county", case_id).allowed[0].refusal is not None  # authorisation, as above


def test_data_compare_waits_for_the_departments_unless_a_county_user_overrides(world: World) -> None:
    case_id = world.alert(HA, V1)
    c = world.cases
    c.advance("vil1", case_id, "APPLY", on=dt.date(2024, 7, 1), authorised=True)
    c.advance("vil1", case_id, "PUBLIC_NOTICE", on=dt.date(2024, 7, 1))
    c.advance("town1", case_id, "TOWNSHIP_VERIFY", on=dt.date(2024, 7, 6))
    c.advance("county", case_id, "COUNTY_CONFIRM", on=dt.date(2024, 7, 6))
    with Session(world.store.engine) as session, session.begin():
        members = list(session.scalars(select(Member.person_key).where(Member.household_id == HA)))
        for dept in ("pboc", "natural-resources"):
            session.add(ComparisonRequest(request_id=f"req-{dept}", department=dept, case_id=case_id,
                                          requested_by="county", requested_at=NOW, persons=len(members)))
            session.flush()
            session.add_all(ComparisonTarget(request_id=f"req-{dept}", person_key=k, household_id=HA)
                            for k in members)
        session.add_all(ComparisonAnswer(event_id=f"ans-{k[:16]}", request_id="req-pboc", department="pboc",
                                         person_key=k, found=False, summary="未查到存款、贷款记录", records=[],
                                         received_at=NOW)
                        for k in members)
        session.add(ComparisonAnswer(event_id="ans-nr", request_id="req-natural-resources",
                                     department="natural-resources", person_key=members[0], found=True,
                                     summary="2024-05-01 购买商品房 89.5㎡", records=[{"面积": "89.5"}],
                                     received_at=NOW))
    with pytest.raises(StepRefused, match="not answered yet by natural-resources; a county user may complete"):
        c.advance("county", case_id, "DATA_COMPARE", on=dt.date(2024, 7, 7))
    with pytest.raises(StepRefused, match="only a county user may override"):
        c.advance("bureau", case_id, "DATA_COMPARE", on=dt.date(2024, 7, 7), override="逾期未回复")
    detail = c.case_detail("county", case_id)
    assert [(cmp.department, cmp.unanswered, len(cmp.answers)) for cmp in detail.comparisons] == [
        ("pboc", 0, 2), ("natural-resources", 1, 1)]
    found = detail.comparisons[1].answers[0]
    assert (found.found, found.summary, found.member_name) == (True, "2024-05-01 购买商品房 89.5㎡", "王建国")
    c.advance("county", case_id, "DATA_COMPARE", on=dt.date(2024, 7, 7), override="自然资源局逾期未回复", note="比对")
    with Session(world.store.engine) as session:
        row = session.scalars(select(CaseHistory).where(CaseHistory.step == "DATA_COMPARE")).one()
        assert (row.by_user, row.override_reason, row.note) == ("county", "自然资源局逾期未回复", "比对")


def test_roles_and_regions_are_refused_where_they_must_be(world: World) -> None:
    case_id = world.alert(HA, V1)
    c = world.cases
    with pytest.raises(NotInRegion, match=f"case {case_id} .* outside the region {V2} of village user vil2"):
        c.advance("vil2", case_id, "APPLY")
    with pytest.raises(NotInRegion):
        c.case_detail("vil2", case_id)
    with pytest.raises(NotInRegion):
        c.case_detail("town2", case_id)
    with pytest.raises(StepRefused, match="APPLY needs a village user, not a township user"):
        c.advance("town1", case_id, "APPLY")
    c.advance("vil1", case_id, "APPLY", on=dt.date(2024, 7, 1), authorised=True)
    c.advance("vil1", case_id, "PUBLIC_NOTICE", on=dt.date(2024, 7, 1))
    c.advance("town1", case_id, "TOWNSHIP_VERIFY", on=dt.date(2024, 7, 6))
    with pytest.raises(StepRefused) as info:
        c.advance("town1", case_id, "COUNTY_CONFIRM")
    assert str(info.value) == f"case {case_id}: COUNTY_CONFIRM needs a county user, not a township user"
    with pytest.raises(StepRefused) as info:
        c.advance("county", case_id, "LABEL")
    assert str(info.value) == (f"case {case_id}: LABEL is not allowed now (last step: TOWNSHIP_VERIFY); allowed now: "
                               "COUNTY_CONFIRM (by county)")
    with pytest.raises(NotFound, match="no user 'nobody'"):
        c.advance("nobody", case_id, "COUNTY_CONFIRM")
    with pytest.raises(NotFound, match="no case 999"):
        c.advance("county", 999, "COUNTY_CONFIRM")
    with pytest.raises(ConfigError, match="unknown step 'JUMP'"):
        c.advance("county", case_id, "JUMP")
    # the refusals are in the audit log, with their reasons
    refused = [(a.user_name, a.detail) for a in c.audit_for_household(HA) if a.action == "REFUSED"]
    assert [u for u, _ in refused] == ["vil2", "vil2", "town2", "town1", "town1", "county"]
    assert refused[4][1] is not None and "COUNTY_CONFIRM needs a county user" in refused[4][1]
    # nothing was written by the refused attempts
    assert [s for k, s, _, _ in world.history(case_id) if k == "STEP"] == ["APPLY", "PUBLIC_NOTICE",
                                                                           "TOWNSHIP_VERIFY"]


def test_worklists_are_scoped_to_the_region_and_filtered(world: World) -> None:
    a = world.alert(HA, V1, severity="MEDIUM")
    b = world.alert(HB, V1, rule="SCHOOL_DROPOUT", severity="HIGH")
    cc = world.alert(HC, V3, rule="DISASTER_LOSS", severity="LOW")
    c = world.cases
    assert [s.id for s in c.visible_cases("vil1")] == [b, a]  # HIGH first
    assert c.visible_cases("vil2") == []
    assert [s.id for s in c.visible_cases("town1")] == [b, a]
    assert [s.id for s in c.visible_cases("town2")] == [cc]
    assert [s.id for s in c.visible_cases("county")] == [b, a, cc]
    assert [s.id for s in c.visible_cases("bureau")] == [b, a, cc]
    assert [s.id for s in c.visible_cases("bureau", township=V3[:9])] == [cc]
    assert [s.id for s in c.visible_cases("bureau", county="652722")] == []
    assert [s.id for s in c.visible_cases("county", rule="school_dropout")] == [b]
    assert [s.id for s in c.visible_cases("county", severity="LOW")] == [cc]
    c.advance("vil1", a, "APPLY", on=dt.date(2024, 7, 1))
    assert [s.id for s in c.visible_cases("county", step="APPLY")] == [a]
    assert [s.id for s in c.visible_cases("county", step="none")] == [b, cc]
    [line] = c.visible_cases("vil1", severity="HIGH")
    assert (line.household_or_region, line.monitoring_status, line.category, line.rules, line.alerts_open) == (
        HB, "MONITORING", "UNSTABLE_LIFTED", ("SCHOOL_DROPOUT",), 1)


def test_nominate_notice_refused_without_labour_or_with_an_open_high_alert(world: World) -> None:
    c = world.cases
    b = world.alert(HB, V1, rule="SCHOOL_DROPOUT", severity="HIGH")  # HB is monitored, without labour capacity
    with pytest.raises(StepRefused, match="without labour capacity .* stays monitored"):
        c.advance("vil1", b, "NOMINATE_NOTICE")
    with Session(world.store.engine) as session, session.begin():
        hb = session.get(Household, HB)
        assert hb is not None
        hb.labour_capacity = "WEAK"
    with pytest.raises(StepRefused, match="1 open HIGH alert"):
        c.advance("vil1", b, "NOMINATE_NOTICE")
    [alert_id] = world.alert_ids(b)
    acked = c.acknowledge_alert("vil1", alert_id)
    assert (acked.status, acked.acknowledged_by) == ("ACKNOWLEDGED", "vil1")
    with pytest.raises(StepRefused, match="1 open HIGH alert"):  # acknowledged is still open
        c.advance("vil1", b, "NOMINATE_NOTICE")
    with pytest.raises(StepRefused, match="resolving needs a bureau/county/township user, not a village user"):
        c.resolve_alert("vil1", alert_id, "已返校")
    resolved = c.resolve_alert("town1", alert_id, "学生已返校")
    assert (resolved.status, resolved.resolved_by) == ("RESOLVED", "town1")
    world.income(HB, V1, "9600")  # P70: the income above the county's line (the roster's 5100 is below)
    c.advance("vil1", b, "NOMINATE_NOTICE", note="提名")
    assert c.case_detail("vil1", b).case.workflow == "ELIMINATION"


def test_acknowledge_and_resolve_a_case(world: World) -> None:
    c = world.cases
    a = world.alert(HA, V1)
    world.alert(HA, V1, rule="DISASTER_LOSS", severity="HIGH")
    first, second = world.alert_ids(a)
    assert c.acknowledge_alert("vil1", first).status == "ACKNOWLEDGED"
    assert c.acknowledge_alert("town1", first).acknowledged_by == "vil1"  # already acknowledged: unchanged
    with pytest.raises(NotInRegion):
        c.acknowledge_alert("vil2", second)
    with pytest.raises(NotFound, match="no alert 999"):
        c.acknowledge_alert("vil1", 999)
    with pytest.raises(StepRefused, match="resolving needs"):
        c.resolve_case("vil1", a, "误报")
    with pytest.raises(StepRefused, match="needs a note"):
        c.resolve_case("town1", a, "  ")
    done = c.resolve_case("town1", a, "核实为误报")
    assert done.case.status == "CLOSED"
    assert [(x.status, x.resolved_by) for x in done.alerts] == [("RESOLVED", "town1"), ("RESOLVED", "town1")]
    with pytest.raises(StepRefused, match="already closed"):
        c.resolve_case("town1", a, "again")
    with pytest.raises(StepRefused, match="the case is closed"):
        c.advance("vil1", a, "APPLY")
    with pytest.raises(StepRefused, match=f"alert {second} is already resolved"):
        c.acknowledge_alert("vil1", second)
    actions = [x.action for x in c.audit_for_household(HA)]
    assert actions.count("ACKNOWLEDGE_ALERT") == 1 and actions.count("RESOLVE_CASE") == 1


def test_every_view_and_action_is_in_the_audit_log(world: World) -> None:
    c = world.cases
    a = world.alert(HA, V1)
    world.now = NOW + dt.timedelta(minutes=1)
    c.case_detail("vil1", a)
    world.now = NOW + dt.timedelta(minutes=2)
    c.case_detail("county", a)
    world.now = NOW + dt.timedelta(minutes=3)
    c.advance("vil1", a, "APPLY", note="户主申请")
    with pytest.raises(NotInRegion):
        c.case_detail("vil2", a)
    log = c.audit_for_household(HA)
    assert [(e.user_name, e.action, e.case_id) for e in log] == [
        ("vil1", "VIEW_CASE", a), ("county", "VIEW_CASE", a), ("vil1", "ADVANCE", a), ("vil2", "REFUSED", a)]
    assert log[0].at == NOW + dt.timedelta(minutes=1) and log[2].detail == "APPLY on 2024-08-01; 户主申请"
    assert c.audit_for_household(HB) == []


def test_users_passwords_and_regions(world: World) -> None:
    c = world.cases
    user = c.authenticate("county", PASSWORD)
    assert user is not None and (user.role, user.region) == ("county", "652701")
    assert c.authenticate("county", "wrong password!") is None
    assert c.authenticate("nobody", PASSWORD) is None
    with Session(world.store.engine) as session:
        stored = session.scalars(select(User.password_hash).where(User.name == "county")).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(ConfigError, match="already exists"):
        c.add_user("county", "county", "652702", PASSWORD)
    with pytest.raises(ConfigError, match="at least 10 characters"):
        c.add_user("short", "county", "652702", "123456789")
    with pytest.raises(ConfigError, match="a township user needs a 9-digit township code"):
        c.add_user("t", "township", "652701", PASSWORD)
    with pytest.raises(ConfigError, match="bureau user's region is 6527"):
        c.add_user("b", "bureau", "652701", PASSWORD)
    with pytest.raises(ConfigError, match="a county user needs a 6-digit county code"):
        c.add_user("b", "county", "6527", PASSWORD)
    with pytest.raises(ConfigError, match="not in Bortala"):
        c.add_user("x", "county", "650101", PASSWORD)
    with pytest.raises(ConfigError, match="unknown role 'mayor'"):
        c.add_user("x", "mayor", "652701", PASSWORD)
    with Session(world.store.engine) as session, session.begin():
        session.scalars(select(User).where(User.name == "vil1")).one().active = False
    assert c.authenticate("vil1", PASSWORD) is None
    with pytest.raises(StepRefused, match="deactivated"):
        c.visible_cases("vil1")
    assert [(e.user_name, e.action) for e in c.audit_for_household(HA)] == []


def test_a_household_not_imported_and_a_village_case(world: World) -> None:
    c = world.cases
    unknown = world.alert("BL-UNKNOWN", V1)
    with pytest.raises(NotFound, match="household BL-UNKNOWN of case .* import the bureau's roster first"):
        c.advance("vil1", unknown, "APPLY")
    detail = c.case_detail("vil1", unknown)
    assert detail.household is None and detail.allowed == () and detail.members == ()
    village = world.store.record_regional_alert({
        "alert_id": "reg-1", "region_code": V1, "rule": "REGIONAL_DISASTER", "severity": "HIGH",
        "reason": "7 日内 5 户受灾", "household_ids": [HA, HB], "event_ids": ["d1"],
        "window_start": dt.date(2024, 7, 1), "window_end": dt.date(2024, 7, 7), "occurred_at": dt.date(2024, 7, 1),
        "raised_at": NOW}).case_id
    with pytest.raises(StepRefused, match="is a village case"):
        c.advance("vil1", village, "APPLY")
    assert {s.id for s in c.visible_cases("vil1")} == {unknown, village}


def test_steps_of_cases_for_the_listing(world: World) -> None:
    a = world.alert(HA, V1)
    b = world.alert(HB, V1)
    world.cases.advance("vil1", a, "APPLY", on=dt.date(2024, 7, 1))
    assert world.cases.steps_of_cases() == {a: ("INCLUSION", "APPLY", "NOT_INCLUDED"), b: (None, None, "MONITORING")}
