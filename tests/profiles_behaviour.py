"""The household profile in the case DB and the risk-elimination checks of the plan (P70), written once for every
backend the case DB runs on.

Not collected on its own (the name does not start with test_): tests/unit/test_profiles_store.py (SQLite) and
tests/integration/test_profiles_postgres.py (PostgreSQL) define a `store` fixture and import these tests by name,
as tests/cases_behaviour.py's are. The world is tests/cases_behaviour.py's: three households imported through the
roster (HA: 7200 a head in 2023 by the roster, two members; HB: without labour capacity; HC in another township),
users of every level.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.thresholds import IncomeLines
from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.casedb.models import CaseAlert, HouseholdProfile
from services.cases.profiles import record_profiles
from services.cases.store import Cases
from tests.cases_behaviour import HA, HB, NOW, V1, World
from tests.unit.doubles import TEST_KEY

T1 = dt.datetime(2024, 7, 30, 2, 0, tzinfo=dt.UTC)
NOMINATED_ON = dt.date(2024, 7, 20)


def profile(household: str, *, updated: dt.datetime = T1, income: str | None = "8200.00", year: int = 2023,
            person_key: str | None = None, damage: str = "SERIOUS") -> dict[str, Any]:
    return {"household_id": household, "village_code": V1, "facts": [
        {"domain": "住房", "topic": "events.housing.house-safety", "department": "housing", "feed": "住房安全",
         "event_id": "ev-house-1", "person_key": person_key, "day": dt.date(2024, 6, 22),
         "values": {"cause": "NATURAL_DISASTER", "safety_grade": "C", "damage": damage,
                    "event_date": "2024-06-22"}},
        {"domain": "收入", "topic": "events.statistics.household-income", "department": "statistics",
         "feed": "住户收入", "event_id": "ev-income-1", "person_key": person_key, "day": dt.date(year, 1, 1),
         "values": {"year": str(year), "per_capita_net_income": income or "0"}}],
        "income_year": year if income else None, "income_per_capita": Decimal(income) if income else None,
        "updated_at": updated}


def stored(world: World, household: str) -> HouseholdProfile | None:
    with Session(world.store.engine, expire_on_commit=False) as session:
        return session.get(HouseholdProfile, household)


def nominate(cases: Cases, case_id: int) -> None:
    cases.advance("vil1", case_id, "NOMINATE_NOTICE", on=NOMINATED_ON, note="提名")


def refusals(world: World) -> list[str]:
    return [e.detail or "" for e in world.cases.audit_for_household(HA) if e.action == "REFUSED"]


def test_profiles_are_kept_in_order_of_their_own_clock(world: World) -> None:
    s = world.store
    assert record_profiles(s, [(HA, profile(HA))]) == ["stored"]
    assert record_profiles(s, [(HA, profile(HA))]) == ["duplicate"]  # redelivered
    later, earlier = T1 + dt.timedelta(hours=2), T1 - dt.timedelta(days=3)
    assert record_profiles(s, [(HA, profile(HA, updated=later, damage="COLLAPSED", income="9100")),
                               (HA, profile(HA, updated=earlier, damage="MINOR", income="100")),
                               (HB, profile(HB, income=None))]) == ["replaced", "stale", "stored"]
    row = stored(world, HA)
    assert row is not None and (row.updated_at, row.income_year, row.income_per_capita) == (
        later, 2023, Decimal("9100.00"))
    assert row.facts[0] == {"domain": "住房", "topic": "events.housing.house-safety", "department": "housing",
                            "feed": "住房安全", "event_id": "ev-house-1", "person_key": None, "day": "2024-06-22",
                            "values": {"cause": "NATURAL_DISASTER", "damage": "COLLAPSED",
                                       "event_date": "2024-06-22", "safety_grade": "C"}}
    assert record_profiles(s, [(HA, profile(HA, updated=later, damage="NONE", income="9200"))]) == ["replaced"]
    row = stored(world, HA)
    assert row is not None and row.facts[0]["values"]["damage"] == "NONE"  # the same moment is not older
    hb = stored(world, HB)
    assert hb is not None and (hb.income_year, hb.income_per_capita) == (None, None)
    assert record_profiles(s, [(HB, None), (HB, None)]) == ["deleted", "absent"]
    assert stored(world, HB) is None
    text = profile(HA, updated=later + dt.timedelta(hours=1))
    text["facts"][0]["values"]["cause"] = "NUL\x00inside"
    assert record_profiles(s, [(HA, text)]) == ["replaced"]
    row = stored(world, HA)
    assert row is not None and row.facts[0]["values"]["cause"] == "NUL\ufffdinside"  # as the alerts' text


def test_nominate_notice_holds_the_income_against_the_county_line(world: World) -> None:
    case_id = world.alert(HA, V1)
    world.include(case_id)
    c = world.cases
    with pytest.raises(StepRefused) as refused:  # no profile: the roster's 7200 counts as 2023's
        nominate(c, case_id)
    assert str(refused.value) == (f"case {case_id}: NOMINATE_NOTICE refused: the income is not stable (P70): "
                                  "人均纯收入 7200 元，低于 2023 年本县标准 9000 元 (花名册上年人均纯收入)")
    record_profiles(world.store, [(HA, profile(HA, income="8200.00", year=2023))])
    with pytest.raises(StepRefused, match="人均纯收入 8200 元，低于 2023 年本县标准 9000 元$"):
        nominate(c, case_id)
    # the case page says so before anyone submits
    [allowed] = c.case_detail("vil1", case_id).allowed
    assert allowed.step == "NOMINATE_NOTICE" and allowed.refusal is not None
    assert "人均纯收入 8200 元，低于 2023 年本县标准 9000 元" in allowed.refusal
    # the county's own line, from the settings (Settings.rules.income_lines)
    strict = Cases(world.store, clock=lambda: world.now, pseudonym_key=lambda: TEST_KEY,
                   lines=IncomeLines(counties={"652701": {2023: Decimal("8500")}}))
    with pytest.raises(StepRefused, match="人均纯收入 8200 元，低于 2023 年本县标准 8500 元$"):
        nominate(strict, case_id)
    at_line = Cases(world.store, clock=lambda: world.now,
                    lines=IncomeLines(counties={"652701": {2023: Decimal("8200")}}))
    nominate(at_line, case_id)  # at the line passes
    assert c.case_detail("vil1", case_id).case.step == "NOMINATE_NOTICE"
    assert refusals(world) == [
        f"case {case_id}: NOMINATE_NOTICE refused: the income is not stable (P70): 人均纯收入 7200 元，低于 2023 年"
        "本县标准 9000 元 (花名册上年人均纯收入)",
        f"case {case_id}: NOMINATE_NOTICE refused: the income is not stable (P70): 人均纯收入 8200 元，低于 2023 年"
        "本县标准 9000 元",
        f"case {case_id}: NOMINATE_NOTICE refused: the income is not stable (P70): 人均纯收入 8200 元，低于 2023 年"
        "本县标准 8500 元"]


@pytest.mark.parametrize("rule", ["HOUSING_UNSAFE", "WATER_UNSAFE", "INSURANCE_GAP"])
def test_nominate_notice_waits_for_housing_water_and_insurance(world: World, rule: str) -> None:
    case_id = world.alert(HA, V1)
    world.include(case_id)
    world.income(HA, V1, "9500")
    assert world.alert(HA, V1, rule=rule, severity="MEDIUM", reason="风险") == case_id
    c = world.cases
    with pytest.raises(StepRefused, match=f"open alert\\(s\\) {rule} .*resolve them first"):
        nominate(c, case_id)
    with Session(world.store.engine) as session:
        alert_id = session.scalars(select(CaseAlert.id).where(CaseAlert.case_id == case_id,
                                                              CaseAlert.rule == rule)).one()
    c.acknowledge_alert("vil1", alert_id)
    with pytest.raises(StepRefused, match=f"open alert\\(s\\) {rule} "):  # acknowledged is still open
        nominate(c, case_id)
    c.resolve_alert("town1", alert_id, "已整改")
    nominate(c, case_id)  # a RESOLVED alert does not block
    details = refusals(world)
    assert len(details) == 2 and all(f"NOMINATE_NOTICE refused: the guarantees are not consolidated (P70): open "
                                     f"alert(s) {rule}" in d for d in details)


def test_the_household_profile_view_is_scoped_and_audited(world: World) -> None:
    case_id = world.alert(HA, V1, rule="HOUSING_UNSAFE", severity="HIGH", reason="房屋严重损坏")
    world.alert(HA, V1, rule="MEDICAL_EXPENSE")
    head = world.household(HA).head_person_key
    record_profiles(world.store, [(HA, profile(HA, person_key=head, income="8200.00", year=2023))])
    c = world.cases
    view = c.household_profile("vil1", HA)
    assert (view.household_id, view.village_code, view.labour_label, view.monitoring_label) == (
        HA, V1, "有劳动能力", "未纳入")
    assert [(m.relation, m.name) for m in view.members] == [("户主", "王建国"), ("配偶", "李秀兰")]
    assert [(f.domain, f.department_name, f.person) for f in view.facts] == [
        ("收入", "统计", "王建国 (户主)"), ("住房", "住建", "王建国 (户主)")]
    assert [(f.label, f.value) for f in view.facts[1].fields][:3] == [("事由", "自然灾害"), ("鉴定等级", "C"),
                                                                     ("损毁程度", "严重损坏")]
    assert view.case_id == case_id and [a.rule for a in view.alerts] == ["HOUSING_UNSAFE", "MEDICAL_EXPENSE"]
    assert view.income is not None and view.income.text == (
        "人均纯收入 8200 元 (2023 年, 统计局住户收入), 本县标准 9000 元: 低于标准")
    assert c.household_profile(None, HA).household_id == HA  # the command line's operator
    assert c.household_profile("vil1", HA, audited=False).case_id == case_id
    with pytest.raises(NotInRegion, match=f"household {HA} \\(village {V1}\\) is outside the region"):
        c.household_profile("vil3", HA)
    with pytest.raises(NotFound, match="no household NOPE"):
        c.household_profile("vil1", "NOPE")
    log = [(e.user_name, e.action, e.household_id) for e in c.audit_for_household(HA)]
    assert log == [("vil1", "VIEW_HOUSEHOLD", HA), ("povwatch-cli", "VIEW_HOUSEHOLD", HA), ("vil3", "REFUSED", HA)]
    hb = c.household_profile("bureau", HB)  # no profile yet: the roster and its income as last year's
    assert hb.facts == () and hb.profile_updated_at is None and hb.case_id is None
    assert hb.income is not None and (hb.income.per_capita, hb.income.year, hb.income.source) == (
        Decimal("5100.00"), 2023, "roster")
    assert NOW.date().year - 1 == 2023
