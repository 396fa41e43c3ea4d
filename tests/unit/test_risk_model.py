"""The household rules of the risk model (docs/rules.md), branch by branch, over plain dicts and Contexts, and the
household stage where arrival order, timers and the changelog matter.

Each rule is called as the household stage calls it, `(event, Context) -> Verdict`, with events shaped like the
decoded Avro records of schemas/avro/povwatch.events.*: exact severities, alert ids (the same fact gives the same id,
another fact another id), event ids and the figures of the Chinese reason. Then, through `HouseholdStage` with real
Avro messages: one alert per death whichever departments report it and in any order (hypothesis), INCOME_DROP
whichever year arrives first (hypothesis), JOB_LOSS and WATER_UNSAFE timers fired by `sweep` on the prefecture's
date (Asia/Shanghai), and timers that survive the changelog and a restart.

A test marked xfail(strict=True) would describe behaviour docs/rules.md asks for that the monitor does not have yet
(none is left: the order dependences they found are fixed and their tests pass).
"""
from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import catalog
from schemas.codec import default_codec
from schemas.thresholds import IncomeLines
from services.monitor import household_rules as hr
from services.monitor.engine import TrackedDict
from services.monitor.handlers import Emit, HouseholdStage
from services.monitor.rules import (
    AlertDraft,
    Context,
    Fact,
    HouseholdContext,
    PersonContext,
    Rule,
    RuleConfig,
    Severity,
    Timer,
    Verdict,
    VillageRecord,
    as_fact,
)
from services.monitor.stages import regional_records
from services.monitor.state import HOUSEHOLD_STATE
from tests.unit.test_monitor_handlers import ROUTES, decoded, household_alerts, source

CODEC = default_codec()
CFG = RuleConfig()
UTC = dt.UTC

HH = "BL-100201-0001"
HH2 = "BL-100201-0002"
VILLAGE = "652701100201"  # county 652701
PK = "a1" * 32  # the 户主
CHILD = "c3" * 32
OTHER = "d4" * 32  # another member
TODAY = dt.date(2026, 3, 10)  # the prefecture's date the rules judge with
NOW = dt.datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 on TODAY in Asia/Shanghai
INGESTED = dt.datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
D = dt.date(2026, 2, 11)  # an event's date

HEAD = PersonContext(PK, HH, dt.date(1980, 1, 1), "户主", VILLAGE)  # 46 in 2026: working age
DAUGHTER = PersonContext(CHILD, HH, dt.date(2012, 9, 20), "女", VILLAGE)
SPOUSE = PersonContext(OTHER, HH, dt.date(1982, 6, 1), "配偶", VILLAGE)
# annual net income 6000 x 4 = 24000 CNY: half of it, the farm-disaster threshold, is 12000
HOUSEHOLD = HouseholdContext(HH, VILLAGE, "MONITORING", Decimal("6000"), 4)


def household(status: str = "MONITORING", income: str = "6000", size: int = 4, village: str = VILLAGE,
              household_id: str = HH) -> HouseholdContext:
    return HouseholdContext(household_id, village, status, Decimal(income), size)


# --- topics ------------------------------------------------------------------------------------------------------


def topic(department: str, feed: str) -> str:
    return catalog.event_feed(department, feed).topic


REGISTRATION = topic("public-security", "registration-change")
TRAFFIC = topic("public-security", "traffic-accident")
CHRONIC = topic("health", "chronic-disease")
DROPOUT = topic("education", "dropout")
ROLL = topic("education", "student-roll")
VEHICLE = topic("public-security", "vehicle-purchase")
HOUSING = topic("natural-resources", "commercial-housing")
MACHINERY = topic("farm-machinery", "machinery-purchase")
BUSINESS = topic("market-regulation", "business-registration")
DEPOSIT = topic("pboc", "deposit-loan")
FARM = topic("agriculture", "farm-disaster")
DISASTER = topic("emergency", "disaster-loss")
INCOME = topic("statistics", "household-income")
EMPLOYMENT = topic("hrss", "employment")
HOUSE = topic("housing", "house-safety")
WATER = topic("water", "drinking-water")
SERIOUS = topic("health", "serious-illness")
DISABILITY = topic("disabled-federation", "disability-certificate")
ASSISTANCE = topic("civil-affairs", "assistance")
INSURANCE = topic("medical-security", "insurance")
OPINION = topic("cac", "public-opinion")
INTAKE = {feed.feed: feed.topic for feed in catalog.INTAKE_CHANNELS}
CHANNEL_TOPIC = {"SELF_DECLARATION": INTAKE["self-declaration"], "CADRE_SCREENING": INTAKE["cadre-visit"],
                 "SOCIAL_CLUE": INTAKE["social-clue"]}


# --- events: the decoded Avro records (without `source`) ---------------------------------------------------------


def envelope(event_id: str, day: dt.date, key: str | None = PK,
             ingested: dt.datetime = INGESTED) -> dict[str, Any]:
    return {"event_id": event_id, "person_key": key, "occurred_at": day, "ingested_at": ingested}


def registration(event_id: str = "reg-1", change: str = "DEATH", day: dt.date = D, key: str = PK) -> dict[str, Any]:
    return {**envelope(event_id, day, key), "change_type": change, "change_date": day, "remark": None}


def traffic(event_id: str = "acc-1", casualty: str = "DEATH", day: dt.date = D, key: str = PK) -> dict[str, Any]:
    return {**envelope(event_id, day, key), "accident_date": day, "casualty": casualty, "location": "G30连霍高速",
            "liability": "UNDETERMINED"}


def reported_on(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 3, 0, tzinfo=UTC)


def chronic(event_id: str = "chr-1", status: str = "DECEASED", disease: str = "HYPERTENSION",
            diagnosed: dt.date = dt.date(2025, 6, 1), reported: dt.date = D, key: str = PK) -> dict[str, Any]:
    """A chronic-disease row (dated by its 确诊日期); it gives no date of death: the day health reported it does."""
    return {**envelope(event_id, diagnosed, key, reported_on(reported)), "disease": disease,
            "diagnosis_date": diagnosed, "contract_service": "SIGNED", "management_status": status}


def dropout(event_id: str = "drop-1", stage: str = "JUNIOR", day: dt.date = D, key: str = CHILD) -> dict[str, Any]:
    return {**envelope(event_id, day, key), "school": "博乐市第三中学", "stage": stage, "grade": "八年级",
            "dropout_date": day}


def roll(event_id: str = "roll-1", status: str = "DROPPED_OUT", stage: str = "JUNIOR", day: dt.date = D,
         key: str = CHILD) -> dict[str, Any]:
    return {**envelope(event_id, day, key), "sex": "F", "school": "博乐市第三中学", "stage": stage, "grade": "八年级",
            "status": status, "status_date": day}


def vehicle(event_id: str = "car-1", day: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, day), "vehicle_type": "小型轿车", "model": "比亚迪秦PLUS", "purchase_date": day,
            "registration_date": day + dt.timedelta(days=7), "price": Decimal("119800")}


def housing(event_id: str = "house-1", kind: str = "NEW_HOUSING", day: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, day), "property_type": kind, "floor_area": Decimal("98.50"),
            "registration_date": day, "location": "博乐市青得里大街"}


def machinery(event_id: str = "mach-1", price: str = "168000", subsidy: str = "32400",
              day: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, day), "machine_type": "TRACTOR", "model": "东方红LX904", "purchase_date": day,
            "purchase_price": Decimal(price), "subsidy": Decimal(subsidy)}


def business(event_id: str = "biz-1", entity: str = "LIMITED_COMPANY", role: str = "LEGAL_REPRESENTATIVE",
             day: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, day), "entity_name": "博乐市某某商贸有限公司", "credit_code": "91652701MA78A1B2C3",
            "entity_type": entity, "registration_date": day, "capital_contribution": Decimal("100000"),
            "member_role": role}


def deposit(event_id: str = "dep-1", balance: str = "1000", loan: str = "0", kind: str = "POVERTY_MICROCREDIT",
            issued: dt.date | None = dt.date(2022, 4, 10), due: dt.date | None = dt.date(2025, 4, 9),
            compared: dt.date = dt.date(2025, 6, 30)) -> dict[str, Any]:
    return {**envelope(event_id, compared), "deposit_balance": Decimal(balance), "loan_balance": Decimal(loan),
            "loan_type": kind, "loan_issue_date": issued, "loan_due_date": due, "interest_subsidy": None,
            "comparison_date": compared}


def farm(event_id: str = "farm-1", loss: str = "8000", lost: str = "12.50", livestock: int = 0,
         key: str | None = PK, day: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, day, key), "village_code": VILLAGE, "disaster_type": "HAIL", "affected": "棉花",
            "affected_area": Decimal("45.00"), "lost_area": Decimal(lost), "livestock_deaths": livestock,
            "direct_loss": Decimal(loss), "disaster_date": day}


def disaster(event_id: str = "dis-1", damage: str = "MINOR", day: dt.date = D, key: str = PK) -> dict[str, Any]:
    return {**envelope(event_id, day, key), "village_code": VILLAGE, "disaster_type": "FLOOD", "disaster_date": day,
            "deaths": 0, "injuries": 1, "house_damage": damage, "direct_loss": Decimal("3000")}


def income(event_id: str, year: int, per_capita: str, size: int = 4) -> dict[str, Any]:
    pc = Decimal(per_capita)
    return {**envelope(event_id, dt.date(year, 1, 1)), "year": year, "household_size": size,
            "net_income": pc * size, "per_capita_net_income": pc, "wage_income": None, "business_income": None,
            "transfer_income": None, "property_income": None}


def employment(event_id: str, start: dt.date, end: dt.date | None = None, key: str = PK,
               employer: str = "江苏某纺织有限公司") -> dict[str, Any]:
    return {**envelope(event_id, start, key), "county": "博乐市", "township": "小营盘镇", "village": "达勒特村",
            "transfer_channel": "ORGANISED", "employment_scope": "OUTSIDE_REGION", "start_date": start,
            "last_month_wage": Decimal("4200"), "employer": employer, "end_date": end, "pension_insurance": "INSURED"}


def house(event_id: str = "hs-1", cause: str = "NATURAL_DISASTER", grade: str = "C", damage: str = "NONE",
          day: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, day), "village_code": VILLAGE, "cause": cause, "safety_grade": grade,
            "damage": damage, "event_date": day}


def water(event_id: str = "wat-1", found: dt.date = D, resolved: dt.date | None = None, key: str | None = PK,
          indicators: tuple[str, ...] = ("QUALITY",)) -> dict[str, Any]:
    return {**envelope(event_id, found, key), "village_code": VILLAGE, "indicators": list(indicators),
            "found_date": found, "description": "入户检测水质不达标", "resolved_date": resolved}


def serious(event_id: str = "ill-1", status: str = "IN_TREATMENT", disease: str = "急性白血病",
            start: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, start), "disease": disease, "hospital": "博尔塔拉蒙古自治州人民医院",
            "treatment_start_date": start, "treatment_status": status}


def disability(event_id: str = "cert-1", grade: str = "GRADE_2", status: str = "VALID",
               issued: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, issued), "disability_category": "PHYSICAL", "disability_grade": grade,
            "issue_date": issued, "certificate_status": status}


def assistance(event_id: str = "sa-1", kind: str = "TEMPORARY_ASSISTANCE", change: str = "PAID",
               amount: str = "1500", start: dt.date = D) -> dict[str, Any]:
    return {**envelope(event_id, start), "assistance_type": kind, "change_type": change, "amount": Decimal(amount),
            "start_date": start, "end_date": None}


def insurance(event_id: str = "ins-1", kind: str = "BASIC_MEDICAL", status: str = "SUSPENDED",
              year: int = 2026, key: str = OTHER) -> dict[str, Any]:
    return {**envelope(event_id, dt.date(year, 1, 1), key), "sex": "F", "insurance_type": kind,
            "enrolment_status": status, "year": year, "personal_contribution": Decimal("380"),
            "subsidised_contribution": None}


def intake(event_id: str = "rep-1", channel: str = "SELF_DECLARATION", result: str | None = None,
           risk: str = "ILLNESS", head: str | None = PK, household_id: str | None = None,
           day: dt.date = dt.date(2026, 3, 5)) -> dict[str, Any]:
    return {"event_id": event_id, "head_person_key": head, "household_id": household_id, "occurred_at": day,
            "ingested_at": INGESTED, "channel": channel, "risk_type": risk,
            "description": "户主住院后无劳动力, 家庭收入锐减", "reported_on": day, "visit_result": result,
            "clue_source": "MEDIA" if channel == "SOCIAL_CLUE" else None}


def opinion(event_id: str = "yq-1", key: str | None = PK, day: dt.date = dt.date(2026, 3, 4)) -> dict[str, Any]:
    return {**envelope(event_id, day, key), "clue_id": "YQ-2026-0042", "found_date": day, "platform": "DOUYIN",
            "village_code": VILLAGE, "risk_type": "DISASTER", "summary": "网友反映某户房屋因冰雹受损无人过问"}


# --- calling the rules -------------------------------------------------------------------------------------------

RuleFn = Callable[[Mapping[str, Any], Context], Verdict]


def context(topic_: str, who: PersonContext | None = HEAD, hh: HouseholdContext = HOUSEHOLD,
            facts: Iterable[Fact] = (), today: dt.date = TODAY, cfg: RuleConfig = CFG) -> Context:
    return Context(topic_, who, hh, list(facts), [], today, cfg)


def judge(rule: RuleFn, topic_: str, event: Mapping[str, Any], who: PersonContext | None = HEAD,
          hh: HouseholdContext = HOUSEHOLD, facts: Iterable[Fact] = (), today: dt.date = TODAY,
          cfg: RuleConfig = CFG) -> Verdict:
    return rule(event, context(topic_, who, hh, facts, today, cfg))


def the(verdict: Verdict) -> AlertDraft:
    """The one alert of a verdict that sets and cancels no timer."""
    assert len(verdict.drafts) == 1, verdict.drafts
    assert verdict.timers == [] and verdict.cancel == [], verdict
    return verdict.drafts[0]


def nothing(verdict: Verdict) -> bool:
    return verdict.drafts == [] and verdict.timers == [] and verdict.cancel == [] and verdict.stays is None


def fact_id(rule: Rule, fact: str, household_id: str = HH) -> str:
    """The id of an alert about `fact`: rule, household and fact, nothing else."""
    return AlertDraft(rule, Severity.LOW, household_id, VILLAGE, "", (), TODAY, fact).alert_id


def event_id_of(rule: Rule, *event_ids: str, household_id: str = HH) -> str:
    """The id of an alert whose fact is its event(s)."""
    return AlertDraft(rule, Severity.LOW, household_id, VILLAGE, "", tuple(event_ids), TODAY).alert_id


def kept(topic_: str, event: Mapping[str, Any]) -> Fact:
    """An earlier event as the household stage keeps it."""
    return as_fact(topic_, event)


# --- DEATH_IN_HOUSEHOLD ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic_, event, told", [
    (REGISTRATION, registration(change="DEATH"), "公安户籍变动: 死亡(2026-02-11)"),
    (REGISTRATION, registration(change="CANCELLED"), "公安户籍变动: 注销(2026-02-11)"),
    (TRAFFIC, traffic(casualty="DEATH"), "公安交通事故: 死亡(2026-02-11)"),
    (CHRONIC, chronic(status="DECEASED", reported=D), "卫健慢病管理: 死亡(2026-02-11)"),
])
def test_a_death_from_each_department_is_one_alert_about_the_person(topic_: str, event: dict[str, Any],
                                                                    told: str) -> None:
    draft = the(judge(hr.death_in_household, topic_, event))
    assert (draft.rule, draft.severity) == (Rule.DEATH_IN_HOUSEHOLD, Severity.HIGH)
    assert (draft.household_id, draft.village_code) == (HH, VILLAGE)
    assert draft.event_ids == (event["event_id"],) and draft.occurred_at == D
    assert draft.fact == PK and draft.alert_id == fact_id(Rule.DEATH_IN_HOUSEHOLD, PK)
    assert draft.reason == ("家庭成员(户主)死亡, 死亡日期2026-02-11, 时年46岁, 属劳动年龄(16-60岁), 家庭失去劳动力; "
                            f"报告: {told}")


@pytest.mark.parametrize("topic_, event", [
    (REGISTRATION, registration(change="MOVE_OUT")), (REGISTRATION, registration(change="BIRTH")),
    (REGISTRATION, registration(change="MARRY_IN")), (REGISTRATION, registration(change="MARRY_OUT")),
    (TRAFFIC, traffic(casualty="SERIOUS_INJURY")), (TRAFFIC, traffic(casualty="MINOR_INJURY")),
    (CHRONIC, chronic(status="MANAGED")), (CHRONIC, chronic(status="LOST_TO_FOLLOW_UP")),
    (CHRONIC, chronic(status="CURED")),
])
def test_reports_of_no_death_raise_no_death_alert(topic_: str, event: dict[str, Any]) -> None:
    assert nothing(judge(hr.death_in_household, topic_, event))


def test_a_death_under_16_or_over_60_is_medium() -> None:
    child = the(judge(hr.death_in_household, REGISTRATION, registration(key=CHILD), who=DAUGHTER))
    assert child.severity is Severity.MEDIUM and "时年13岁, 不在劳动年龄(16-60岁)" in child.reason
    old = PersonContext(OTHER, HH, dt.date(1940, 5, 1), "父亲", VILLAGE)
    draft = the(judge(hr.death_in_household, TRAFFIC, traffic(key=OTHER), who=old))
    assert draft.severity is Severity.MEDIUM and "家庭成员(父亲)死亡" in draft.reason and "时年85岁" in draft.reason
    assert draft.alert_id == fact_id(Rule.DEATH_IN_HOUSEHOLD, OTHER)


DEATHS: dict[str, tuple[str, Callable[[dt.date], dict[str, Any]], str]] = {
    "registration": (REGISTRATION, lambda day: registration("reg-1", "DEATH", day), "公安户籍变动: 死亡"),
    "traffic": (TRAFFIC, lambda day: traffic("acc-1", "DEATH", day), "公安交通事故: 死亡"),
    "chronic": (CHRONIC, lambda day: chronic("chr-1", "DECEASED", reported=day), "卫健慢病管理: 死亡"),
}


@pytest.mark.parametrize("first, second", list(itertools.permutations(DEATHS, 2)))
def test_a_second_departments_report_is_the_same_alert_with_both_events(first: str, second: str) -> None:
    (t1, make1, label1), (t2, make2, label2) = DEATHS[first], DEATHS[second]
    one, two = make1(D), make2(D)
    alone = the(judge(hr.death_in_household, t1, one))
    both = the(judge(hr.death_in_household, t2, two, facts=[kept(t1, one)]))
    assert both.alert_id == alone.alert_id == fact_id(Rule.DEATH_IN_HOUSEHOLD, PK)
    assert both.event_ids == tuple(sorted([one["event_id"], two["event_id"]]))
    assert both.severity is Severity.HIGH and both.occurred_at == D
    assert label1 in both.reason and label2 in both.reason
    # another member's report is not evidence of this death
    theirs = make1(D) | {"person_key": OTHER, "event_id": "x-9"}
    alone_again = the(judge(hr.death_in_household, t2, two, facts=[kept(t1, theirs)]))
    assert alone_again.event_ids == (two["event_id"],)


def test_the_earliest_reported_date_decides_the_age_band() -> None:
    # born 1965-02-20: 60 on the registration's date of death (2026-02-15), 61 when health reported it (2026-03-01)
    who = PersonContext(PK, HH, dt.date(1965, 2, 20), "户主", VILLAGE)
    reg, chr_ = registration("reg-1", "DEATH", dt.date(2026, 2, 15)), chronic("chr-1", reported=dt.date(2026, 3, 1))
    alone = the(judge(hr.death_in_household, CHRONIC, chr_, who=who))
    assert alone.severity is Severity.MEDIUM and alone.occurred_at == dt.date(2026, 3, 1)
    assert "死亡日期2026-03-01, 时年61岁, 不在劳动年龄(16-60岁)" in alone.reason
    for this, earlier in ((CHRONIC, chr_), (REGISTRATION, reg)), ((REGISTRATION, reg), (CHRONIC, chr_)):
        draft = the(judge(hr.death_in_household, this[0], this[1], who=who, facts=[kept(*earlier)]))
        assert draft.alert_id == alone.alert_id
        assert (draft.severity, draft.occurred_at) == (Severity.HIGH, dt.date(2026, 2, 15))
        assert draft.event_ids == ("chr-1", "reg-1")
        head, told = draft.reason.split("; 报告: ")
        assert head == "家庭成员(户主)死亡, 死亡日期2026-02-15, 时年60岁, 属劳动年龄(16-60岁), 家庭失去劳动力"
        assert sorted(told.split("; ")) == ["公安户籍变动: 死亡(2026-02-15)", "卫健慢病管理: 死亡(2026-03-01)"]


# --- SCHOOL_DROPOUT ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage, label", [("PRIMARY", "小学"), ("JUNIOR", "初中")])
@pytest.mark.parametrize("feed", ["dropout", "roll"])
def test_a_compulsory_education_dropout_is_high(stage: str, label: str, feed: str) -> None:
    topic_, event, source_ = ((DROPOUT, dropout(stage=stage), "教育辍学登记") if feed == "dropout"
                              else (ROLL, roll(stage=stage), "在校生学籍"))
    draft = the(judge(hr.school_dropout, topic_, event, who=DAUGHTER))
    assert (draft.rule, draft.severity, draft.event_ids) == (Rule.SCHOOL_DROPOUT, Severity.HIGH, (event["event_id"],))
    assert draft.occurred_at == D and draft.alert_id == fact_id(Rule.SCHOOL_DROPOUT, f"{CHILD}|2025")
    assert draft.reason == (f"义务教育阶段辍学: {label}八年级, 博乐市第三中学, 辍学日期2026-02-11(2025-2026学年), "
                            f"学生13岁(女); 报告: {source_}")


@pytest.mark.parametrize("topic_, event", [
    (DROPOUT, dropout(stage="SENIOR")), (DROPOUT, dropout(stage="VOCATIONAL")),
    (ROLL, roll(stage="SENIOR")), (ROLL, roll(stage="VOCATIONAL")), (ROLL, roll(stage="PRESCHOOL")),
    (ROLL, roll(stage="HIGHER_VOCATIONAL")), (ROLL, roll(stage="UNDERGRADUATE")),
    (ROLL, roll(status="ENROLLED")), (ROLL, roll(status="SUSPENDED")), (ROLL, roll(status="GRADUATED")),
    (ROLL, roll(status="TRANSFERRED_OUT")), (ROLL, roll(status="ENROLLED", stage="PRIMARY")),
])
def test_no_dropout_alert_after_compulsory_education_or_for_a_child_still_at_school(topic_: str,
                                                                                     event: dict[str, Any]) -> None:
    assert nothing(judge(hr.school_dropout, topic_, event, who=DAUGHTER))


@pytest.mark.parametrize("first_is_dropout", [True, False])
def test_dropout_and_student_roll_of_one_child_and_school_year_are_one_alert(first_is_dropout: bool) -> None:
    drop, rolled = dropout("drop-1", day=dt.date(2025, 9, 1)), roll("roll-1", day=dt.date(2026, 8, 31))
    first, second = ((DROPOUT, drop), (ROLL, rolled)) if first_is_dropout else ((ROLL, rolled), (DROPOUT, drop))
    alone = the(judge(hr.school_dropout, *first, who=DAUGHTER))
    both = the(judge(hr.school_dropout, *second, who=DAUGHTER, facts=[kept(*first)]))
    assert alone.alert_id == both.alert_id == fact_id(Rule.SCHOOL_DROPOUT, f"{CHILD}|2025")
    assert both.event_ids == ("drop-1", "roll-1")
    assert both.occurred_at == dt.date(2025, 9, 1) and "辍学日期2025-09-01(2025-2026学年)" in both.reason
    assert "报告: 教育辍学登记、在校生学籍" in both.reason or "报告: 在校生学籍、教育辍学登记" in both.reason


def test_the_school_year_turns_on_1_september() -> None:
    august, september = dropout("drop-1", day=dt.date(2025, 8, 31)), roll("roll-1", day=dt.date(2025, 9, 1))
    a = the(judge(hr.school_dropout, DROPOUT, august, who=DAUGHTER))
    b = the(judge(hr.school_dropout, ROLL, september, who=DAUGHTER, facts=[kept(DROPOUT, august)]))
    assert a.alert_id == fact_id(Rule.SCHOOL_DROPOUT, f"{CHILD}|2024") and "(2024-2025学年)" in a.reason
    assert b.alert_id == fact_id(Rule.SCHOOL_DROPOUT, f"{CHILD}|2025") and "(2025-2026学年)" in b.reason
    assert b.event_ids == ("roll-1",)  # last school year's report is not evidence of this one
    # another child of the household, same school year: another alert
    son = PersonContext(OTHER, HH, dt.date(2013, 1, 5), "子", VILLAGE)
    c = the(judge(hr.school_dropout, ROLL, roll("roll-2", key=OTHER, day=dt.date(2025, 9, 1)), who=son,
                  facts=[kept(ROLL, september)]))
    assert c.alert_id == fact_id(Rule.SCHOOL_DROPOUT, f"{OTHER}|2025") != b.alert_id and c.event_ids == ("roll-2",)


# --- ASSET_PURCHASE ----------------------------------------------------------------------------------------------

ASSETS: dict[str, tuple[str, dict[str, Any], dt.date, str]] = {
    "vehicle": (VEHICLE, vehicle(), D, "购买车辆: 小型轿车 比亚迪秦PLUS, 购买日期2026-02-11, 购车价格119800元"),
    "housing": (HOUSING, housing(kind="SHOP"), D, "登记商铺: 建筑面积98.50平方米, 登记日期2026-02-11"),
    "machinery": (MACHINERY, machinery(), D,
                  "购置农机: 东方红LX904, 购买金额168000元, 补贴32400元, 自付135600元(达到50000元)"),
    "business": (BUSINESS, business(), D,
                 "任有限责任公司法定代表人: 博乐市某某商贸有限公司, 出资额100000元, 注册日期2026-02-11"),
    "deposit": (DEPOSIT, deposit(balance="30000"), dt.date(2025, 6, 30),
                "存款余额30000元, 达到家庭年纯收入24000元的100%(比对日期2025-06-30)"),
}


@pytest.mark.parametrize("feed", list(ASSETS))
def test_an_asset_of_a_monitored_household_is_low(feed: str) -> None:
    topic_, event, day, what = ASSETS[feed]
    draft = the(judge(hr.asset_purchase, topic_, event))
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.ASSET_PURCHASE, Severity.LOW, (event["event_id"],), day)
    assert draft.reason == f"监测中家庭成员(户主){what}; 请在数据比对环节核查家庭资产"
    assert draft.alert_id == event_id_of(Rule.ASSET_PURCHASE, event["event_id"])
    # one alert per event: the same event again is the same alert, another event another
    assert the(judge(hr.asset_purchase, topic_, event)).alert_id == draft.alert_id
    assert the(judge(hr.asset_purchase, topic_, {**event, "event_id": "other"})).alert_id != draft.alert_id


@pytest.mark.parametrize("status", ["NOT_INCLUDED", "RISK_ELIMINATED"])
@pytest.mark.parametrize("feed", list(ASSETS))
def test_an_asset_of_a_household_not_monitored_raises_nothing(feed: str, status: str) -> None:
    topic_, event, _, _ = ASSETS[feed]
    assert nothing(judge(hr.asset_purchase, topic_, event, hh=household(status)))


@pytest.mark.parametrize("kind, label", [("NEW_HOUSING", "商品住房"), ("SECOND_HAND_HOUSING", "二手住房"),
                                         ("SHOP", "商铺"), ("OTHER", None)])
def test_housing_counts_for_homes_and_shops_only(kind: str, label: str | None) -> None:
    verdict = judge(hr.asset_purchase, HOUSING, housing(kind=kind))
    if label is None:
        assert nothing(verdict)
    else:
        assert f"登记{label}: 建筑面积98.50平方米" in the(verdict).reason


@pytest.mark.parametrize("price, subsidy, net", [("82399.99", "32400", None), ("82400", "32400", "50000"),
                                                 ("50000", "0", "50000"), ("49999.99", "0", None)])
def test_machinery_counts_from_50000_paid_after_the_subsidy(price: str, subsidy: str, net: str | None) -> None:
    verdict = judge(hr.asset_purchase, MACHINERY, machinery(price=price, subsidy=subsidy))
    if net is None:
        assert nothing(verdict)
    else:
        assert f"自付{net}元(达到50000元)" in the(verdict).reason


@pytest.mark.parametrize("entity, role, alert", [
    ("LIMITED_COMPANY", "LEGAL_REPRESENTATIVE", True), ("LIMITED_COMPANY", "INVESTOR", False),
    ("LIMITED_COMPANY", "MEMBER", False), ("FARMERS_COOPERATIVE", "LEGAL_REPRESENTATIVE", False),
    ("INDIVIDUAL_BUSINESS", "LEGAL_REPRESENTATIVE", False), ("OTHER", "LEGAL_REPRESENTATIVE", False),
])
def test_business_counts_for_the_legal_representative_of_a_limited_company(entity: str, role: str,
                                                                           alert: bool) -> None:
    verdict = judge(hr.asset_purchase, BUSINESS, business(entity=entity, role=role))
    assert (the(verdict).severity is Severity.LOW) if alert else nothing(verdict)


@pytest.mark.parametrize("balance, alert", [("24000", True), ("23999.99", False), ("24000.01", True)])
def test_a_deposit_counts_from_the_households_annual_net_income(balance: str, alert: bool) -> None:
    verdict = judge(hr.asset_purchase, DEPOSIT, deposit(balance=balance))  # 6000 x 4 = 24000
    if alert:
        assert f"存款余额{balance}元, 达到家庭年纯收入24000元的100%" in the(verdict).reason
    else:
        assert nothing(verdict)
    bigger = household(income="6000.01")  # 24000.04 a year
    assert nothing(judge(hr.asset_purchase, DEPOSIT, deposit(balance="24000"), hh=bigger))


# --- DISASTER_LOSS (farm-disaster naming a household) ------------------------------------------------------------


@pytest.mark.parametrize("loss, severity, share", [("12000", Severity.HIGH, "50%, 达到50%"),
                                                   ("11999.99", Severity.MEDIUM, "50%"),
                                                   ("8000", Severity.MEDIUM, "33%"),
                                                   ("30000", Severity.HIGH, "125%, 达到50%")])
def test_farm_disaster_naming_a_household_is_high_from_half_the_annual_income(loss: str, severity: Severity,
                                                                            share: str) -> None:
    draft = the(judge(hr.disaster, FARM, farm(loss=loss)))
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.DISASTER_LOSS, severity, ("farm-1",), D)
    amount = loss.removesuffix(".00")
    assert draft.reason == (f"农业灾情(冰雹, 2026-02-11): 受灾棉花, 受灾面积45.00亩, 绝收12.50亩, 死亡牲畜0头只, "
                            f"直接经济损失{amount}元, 占家庭年纯收入24000元的{share}")
    assert draft.alert_id == event_id_of(Rule.DISASTER_LOSS, "farm-1")


def test_the_disaster_rule_still_judges_disaster_loss_rows_as_before() -> None:
    assert the(judge(hr.disaster, DISASTER, disaster(damage="COLLAPSED"))).severity is Severity.HIGH
    medium = the(judge(hr.disaster, DISASTER, disaster(damage="MINOR")))
    assert medium.severity is Severity.MEDIUM and medium.reason.startswith("洪涝灾害(2026-02-11): 死亡0人, 受伤1人")


# --- INCOME_BELOW_LINE ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, severity, label", [("NOT_INCLUDED", Severity.HIGH, "未纳入监测"),
                                                     ("RISK_ELIMINATED", Severity.HIGH, "已风险消除"),
                                                     ("MONITORING", Severity.MEDIUM, "监测中")])
def test_income_below_the_line_by_monitoring_status(status: str, severity: Severity, label: str) -> None:
    row = income("inc-2025", 2025, "8200")
    draft = the(judge(hr.income, INCOME, row, hh=household(status)))
    assert (draft.rule, draft.severity, draft.event_ids) == (Rule.INCOME_BELOW_LINE, severity, ("inc-2025",))
    assert draft.occurred_at == dt.date(2025, 1, 1)
    assert draft.reason == (f"人均纯收入8200元, 低于2025年本县(652701)标准9000元; 家庭{label}"
                            "(家庭纯收入32800元, 4人)")
    assert draft.alert_id == fact_id(Rule.INCOME_BELOW_LINE, "2025")


def test_income_at_the_line_is_not_below_it() -> None:
    assert nothing(judge(hr.income, INCOME, income("inc-2025", 2025, "9000")))
    assert "人均纯收入8999.99元" in the(judge(hr.income, INCOME, income("inc-2025", 2025, "8999.99"))).reason


def test_the_line_is_the_households_countys_for_that_year() -> None:
    cfg = RuleConfig(income_lines=IncomeLines(default=Decimal("9000"), counties={"652702": {2025: Decimal("9600")}}))
    other_county = household(village="652702100101", household_id=HH2)
    below = the(judge(hr.income, INCOME, income("a", 2025, "9599.99"), hh=other_county, cfg=cfg))
    assert below.household_id == HH2 and "低于2025年本县(652702)标准9600元" in below.reason
    assert nothing(judge(hr.income, INCOME, income("b", 2025, "9600"), hh=other_county, cfg=cfg))
    # the county's other years, and the other counties, have the default line
    assert nothing(judge(hr.income, INCOME, income("c", 2024, "9000"), hh=other_county, cfg=cfg))
    assert "标准9000元" in the(judge(hr.income, INCOME, income("d", 2024, "8999.99"), hh=other_county,
                                     cfg=cfg)).reason
    assert nothing(judge(hr.income, INCOME, income("e", 2025, "9000"), cfg=cfg))
    assert "低于2025年本县(652701)标准9000元" in the(judge(hr.income, INCOME, income("f", 2025, "8999.99"),
                                                           cfg=cfg)).reason
    # a default of its own
    cfg = RuleConfig(income_lines=IncomeLines(default=Decimal("9500")))
    assert "标准9500元" in the(judge(hr.income, INCOME, income("g", 2025, "9499.99"), cfg=cfg)).reason


def test_one_income_alert_per_household_and_year() -> None:
    first = the(judge(hr.income, INCOME, income("inc-a", 2025, "8200")))
    corrected = the(judge(hr.income, INCOME, income("inc-b", 2025, "8100"), facts=[
        kept(INCOME, income("inc-a", 2025, "8200"))]))
    assert corrected.alert_id == first.alert_id and corrected.event_ids == ("inc-b",)
    assert the(judge(hr.income, INCOME, income("inc-c", 2024, "8200"))).alert_id != first.alert_id
    assert the(judge(hr.income, INCOME, income("inc-a", 2025, "8200"),
                     hh=household(household_id=HH2))).alert_id != first.alert_id


# --- INCOME_DROP ---------------------------------------------------------------------------------------------------


def test_a_drop_below_70_percent_of_last_year_is_medium() -> None:
    before = kept(INCOME, income("inc-2024", 2024, "16000"))  # 70% of it: 11200
    draft = the(judge(hr.income, INCOME, income("inc-2025", 2025, "11199.99"), facts=[before]))
    assert (draft.rule, draft.severity) == (Rule.INCOME_DROP, Severity.MEDIUM)
    assert draft.event_ids == ("inc-2024", "inc-2025") and draft.occurred_at == dt.date(2025, 1, 1)
    assert draft.reason == "人均纯收入11199.99元(2025年), 较上年16000元下降30%, 低于上年的70%"
    assert draft.alert_id == fact_id(Rule.INCOME_DROP, "2025") != fact_id(Rule.INCOME_BELOW_LINE, "2025")
    assert nothing(judge(hr.income, INCOME, income("inc-2025", 2025, "11200"), facts=[before]))


def test_no_drop_alert_below_the_line_or_without_last_years_row() -> None:
    before = kept(INCOME, income("inc-2024", 2024, "16000"))
    below = judge(hr.income, INCOME, income("inc-2025", 2025, "8000"), facts=[before])
    assert [d.rule for d in below.drafts] == [Rule.INCOME_BELOW_LINE]
    two_years_ago = kept(INCOME, income("inc-2023", 2023, "16000"))
    assert nothing(judge(hr.income, INCOME, income("inc-2025", 2025, "9500"), facts=[two_years_ago]))
    assert nothing(judge(hr.income, INCOME, income("inc-2025", 2025, "9500")))


def test_last_years_row_arriving_after_this_years_raises_the_same_drop() -> None:
    this_year, last_year = income("inc-2025", 2025, "9500"), income("inc-2024", 2024, "16000")
    in_order = the(judge(hr.income, INCOME, this_year, facts=[kept(INCOME, last_year)]))
    late = the(judge(hr.income, INCOME, last_year, facts=[kept(INCOME, this_year)]))
    assert late.alert_id == in_order.alert_id == fact_id(Rule.INCOME_DROP, "2025")
    assert (late.rule, late.severity, late.event_ids, late.occurred_at, late.reason) == (
        in_order.rule, in_order.severity, in_order.event_ids, in_order.occurred_at, in_order.reason)
    assert late.reason == "人均纯收入9500元(2025年), 较上年16000元下降41%, 低于上年的70%"


# --- JOB_LOSS ------------------------------------------------------------------------------------------------------

ENDED = dt.date(2025, 12, 1)
DUE = ENDED + dt.timedelta(days=60)  # 2026-01-30
JOB_FACT = f"{PK}|2025-12-01"


def job_loss(event: dict[str, Any], today: dt.date, facts: Iterable[Fact] = ()) -> Verdict:
    return judge(hr.job_loss, EMPLOYMENT, event, facts=facts, today=today)


def test_a_job_ended_60_days_ago_without_a_new_one_is_medium_on_arrival() -> None:
    draft = the(job_loss(employment("job-1", dt.date(2025, 3, 1), ENDED), today=DUE))
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.JOB_LOSS, Severity.MEDIUM, ("job-1",), ENDED)
    assert draft.reason == ("家庭成员(户主)务工结束(江苏某纺织有限公司, 2025-12-01)后60天内未再就业, "
                            "家庭可能失去工资性收入")
    assert draft.alert_id == fact_id(Rule.JOB_LOSS, JOB_FACT)


def test_a_job_ended_less_than_60_days_ago_sets_a_timer() -> None:
    verdict = job_loss(employment("job-1", dt.date(2025, 3, 1), ENDED), today=DUE - dt.timedelta(days=1))
    assert verdict.drafts == [] and verdict.cancel == []
    assert verdict.timers == [Timer(Rule.JOB_LOSS.value, JOB_FACT, DUE, ENDED, "job-1", PK)]


def test_a_job_without_an_end_date_raises_nothing() -> None:
    assert nothing(job_loss(employment("job-1", dt.date(2025, 3, 1)), today=TODAY))


@pytest.mark.parametrize("today", [DUE - dt.timedelta(days=1), DUE, TODAY])
@pytest.mark.parametrize("start_after, found", [(0, True), (1, True), (60, True), (61, False)])
def test_a_new_job_starting_within_60_days_after_the_end_means_no_job_loss(today: dt.date, start_after: int,
                                                                          found: bool) -> None:
    new = kept(EMPLOYMENT, employment("job-2", ENDED + dt.timedelta(days=start_after)))
    verdict = job_loss(employment("job-1", dt.date(2025, 3, 1), ENDED), today, facts=[new])
    if found:
        assert nothing(verdict)
    elif today >= DUE:
        assert the(verdict).alert_id == fact_id(Rule.JOB_LOSS, JOB_FACT)
    else:
        assert verdict.drafts == [] and [t.fact for t in verdict.timers] == [JOB_FACT]


def test_another_persons_new_job_or_an_earlier_start_does_not_count() -> None:
    theirs = kept(EMPLOYMENT, employment("job-2", ENDED + dt.timedelta(days=3), key=OTHER))
    before = kept(EMPLOYMENT, employment("job-3", ENDED - dt.timedelta(days=1)))
    assert the(job_loss(employment("job-1", dt.date(2025, 3, 1), ENDED), DUE, [theirs, before])).rule is Rule.JOB_LOSS


@pytest.mark.parametrize("start_after, cancels", [(0, True), (30, True), (60, True), (61, False), (-1, False)])
def test_a_new_job_row_cancels_the_timer_of_an_end_it_follows_within_60_days(start_after: int,
                                                                            cancels: bool) -> None:
    ended = kept(EMPLOYMENT, employment("job-1", dt.date(2025, 3, 1), ENDED))
    verdict = job_loss(employment("job-2", ENDED + dt.timedelta(days=start_after)), DUE - dt.timedelta(days=5),
                       facts=[ended])
    assert verdict.drafts == [] and verdict.timers == []
    assert verdict.cancel == ([(Rule.JOB_LOSS.value, JOB_FACT)] if cancels else [])


def test_the_job_loss_timer_judges_with_the_facts_known_when_it_fires() -> None:
    timer = Timer(Rule.JOB_LOSS.value, JOB_FACT, DUE, ENDED, "job-1", PK)
    ended = kept(EMPLOYMENT, employment("job-1", dt.date(2025, 3, 1), ENDED))
    fired = the(hr.fire(timer, context("", None, facts=[ended], today=DUE)))
    assert (fired.rule, fired.severity, fired.event_ids, fired.occurred_at) == (
        Rule.JOB_LOSS, Severity.MEDIUM, ("job-1",), ENDED)
    assert fired.alert_id == fact_id(Rule.JOB_LOSS, JOB_FACT)
    assert "务工结束(江苏某纺织有限公司, 2025-12-01)后60天内未再就业" in fired.reason
    for start_after, alerts in ((60, False), (61, True)):
        new = kept(EMPLOYMENT, employment("job-2", ENDED + dt.timedelta(days=start_after)))
        verdict = hr.fire(timer, context("", None, facts=[ended, new], today=DUE))
        assert len(verdict.drafts) == (1 if alerts else 0)


# --- HOUSING_UNSAFE ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grade, damage, severity", [
    ("D", "NONE", Severity.HIGH), ("A", "COLLAPSED", Severity.HIGH), ("D", "COLLAPSED", Severity.HIGH),
    ("C", "COLLAPSED", Severity.HIGH), ("D", "SERIOUS", Severity.HIGH),
    ("C", "NONE", Severity.MEDIUM), ("B", "SERIOUS", Severity.MEDIUM), ("C", "SERIOUS", Severity.MEDIUM),
    ("A", "NONE", None), ("B", "MINOR", None), ("A", "MINOR", None), ("B", "NONE", None),
])
@pytest.mark.parametrize("cause", ["NATURAL_DISASTER", "ASSESSMENT", "OTHER"])
def test_house_safety_by_grade_and_damage(grade: str, damage: str, severity: Severity | None, cause: str) -> None:
    verdict = judge(hr.housing_unsafe, HOUSE, house(cause=cause, grade=grade, damage=damage))
    if severity is None:
        assert nothing(verdict)
        return
    draft = the(verdict)
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.HOUSING_UNSAFE, severity, ("hs-1",), D)
    labels = {"NONE": "无", "MINOR": "一般损坏", "SERIOUS": "严重损坏", "COLLAPSED": "倒塌"}
    causes = {"NATURAL_DISASTER": "自然灾害", "ASSESSMENT": "鉴定", "OTHER": "其他"}
    assert draft.reason == (f"住房安全: 鉴定等级{grade}级, 损毁程度{labels[damage]}"
                            f"(事由: {causes[cause]}, 2026-02-11), 住房安全无保障")
    assert draft.alert_id == event_id_of(Rule.HOUSING_UNSAFE, "hs-1")


@pytest.mark.parametrize("grade, damage", [("D", "COLLAPSED"), ("C", "SERIOUS"), ("A", "NONE")])
def test_a_completed_renovation_raises_nothing(grade: str, damage: str) -> None:
    assert nothing(judge(hr.housing_unsafe, HOUSE, house(cause="RENOVATION_COMPLETED", grade=grade, damage=damage)))


# --- WATER_UNSAFE ----------------------------------------------------------------------------------------------------

FOUND = dt.date(2026, 2, 20)
WATER_DUE = FOUND + dt.timedelta(days=30)  # 2026-03-22


def test_an_unsolved_water_problem_is_medium_and_waits_30_days() -> None:
    verdict = judge(hr.water_unsafe, WATER, water(found=FOUND, indicators=("QUALITY", "QUANTITY")),
                    today=WATER_DUE - dt.timedelta(days=1))
    (draft,) = verdict.drafts
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.WATER_UNSAFE, Severity.MEDIUM, ("wat-1",), FOUND)
    assert draft.reason == "饮水安全问题(水质、水量), 发现日期2026-02-20, 尚未解决"
    assert draft.alert_id == fact_id(Rule.WATER_UNSAFE, "2026-02-20")
    assert verdict.timers == [Timer(Rule.WATER_UNSAFE.value, "2026-02-20", WATER_DUE, FOUND, "wat-1", PK)]
    assert verdict.cancel == []


@pytest.mark.parametrize("late", [0, 1, 200])
def test_a_water_problem_unsolved_30_days_or_more_on_arrival_is_high(late: int) -> None:
    draft = the(judge(hr.water_unsafe, WATER, water(found=FOUND), today=WATER_DUE + dt.timedelta(days=late)))
    assert (draft.severity, draft.event_ids, draft.occurred_at) == (Severity.HIGH, ("wat-1",), FOUND)
    assert draft.reason == "饮水安全问题(水质), 发现日期2026-02-20, 尚未解决, 已超过30天"
    assert draft.alert_id == fact_id(Rule.WATER_UNSAFE, "2026-02-20")  # the MEDIUM alert's, escalated


def test_a_resolution_row_cancels_the_timer_and_raises_nothing() -> None:
    verdict = judge(hr.water_unsafe, WATER, water("wat-2", found=FOUND, resolved=dt.date(2026, 3, 1)),
                    facts=[kept(WATER, water(found=FOUND))])
    assert verdict.drafts == [] and verdict.timers == []
    assert verdict.cancel == [(Rule.WATER_UNSAFE.value, "2026-02-20")]


@pytest.mark.parametrize("today", [FOUND, WATER_DUE, WATER_DUE + dt.timedelta(days=10)])
def test_a_resolution_that_arrived_before_the_unsolved_row_means_no_alert(today: dt.date) -> None:
    resolved = kept(WATER, water("wat-2", found=FOUND, resolved=dt.date(2026, 3, 1)))
    assert nothing(judge(hr.water_unsafe, WATER, water(found=FOUND), facts=[resolved], today=today))
    # another 发现日期's resolution does not count
    other = kept(WATER, water("wat-3", found=FOUND - dt.timedelta(days=1), resolved=dt.date(2026, 3, 1)))
    assert len(judge(hr.water_unsafe, WATER, water(found=FOUND), facts=[other], today=today).drafts) == 1


def test_the_water_timer_fires_high_unless_resolved_meanwhile() -> None:
    timer = Timer(Rule.WATER_UNSAFE.value, "2026-02-20", WATER_DUE, FOUND, "wat-1", PK)
    unsolved = kept(WATER, water(found=FOUND, indicators=("QUALITY", "SUPPLY_RATE")))
    draft = the(hr.fire(timer, context("", None, facts=[unsolved], today=WATER_DUE)))
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.WATER_UNSAFE, Severity.HIGH, ("wat-1",), FOUND)
    assert draft.reason == "饮水安全问题(水质、供水保证率), 发现日期2026-02-20, 尚未解决, 已超过30天"
    assert draft.alert_id == fact_id(Rule.WATER_UNSAFE, "2026-02-20")
    resolved = kept(WATER, water("wat-2", found=FOUND, resolved=dt.date(2026, 3, 1)))
    assert nothing(hr.fire(timer, context("", None, facts=[unsolved, resolved], today=WATER_DUE)))


# --- ACCIDENT_INJURY -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("birth, age, severity", [
    (dt.date(2010, 2, 11), 16, Severity.HIGH), (dt.date(2010, 2, 12), 15, Severity.MEDIUM),
    (dt.date(1965, 2, 12), 60, Severity.HIGH), (dt.date(1965, 2, 11), 61, Severity.MEDIUM),
    (dt.date(1980, 1, 1), 46, Severity.HIGH),
])
def test_a_serious_injury_by_working_age(birth: dt.date, age: int, severity: Severity) -> None:
    who = PersonContext(PK, HH, birth, "户主", VILLAGE)
    draft = the(judge(hr.accident_injury, TRAFFIC, traffic(casualty="SERIOUS_INJURY"), who=who))
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.ACCIDENT_INJURY, severity, ("acc-1",), D)
    tail = "属劳动年龄(16-60岁), 家庭劳动力受损" if severity is Severity.HIGH else "不在劳动年龄(16-60岁)"
    assert draft.reason == f"家庭成员(户主)交通事故重伤(2026-02-11), 时年{age}岁, {tail}"
    assert draft.alert_id == event_id_of(Rule.ACCIDENT_INJURY, "acc-1")


@pytest.mark.parametrize("casualty", ["MINOR_INJURY", "DEATH"])
def test_a_minor_injury_or_a_death_is_no_injury_alert(casualty: str) -> None:
    assert nothing(judge(hr.accident_injury, TRAFFIC, traffic(casualty=casualty)))


# --- SERIOUS_ILLNESS -------------------------------------------------------------------------------------------------


def test_serious_illness_in_treatment_then_abandoned_is_one_alert_escalated() -> None:
    medium = the(judge(hr.serious_illness, SERIOUS, serious("ill-1", "IN_TREATMENT")))
    assert (medium.rule, medium.severity, medium.event_ids, medium.occurred_at) == (
        Rule.SERIOUS_ILLNESS, Severity.MEDIUM, ("ill-1",), D)
    assert medium.reason == "家庭成员(户主)患大病(急性白血病), 博尔塔拉蒙古自治州人民医院, 救治开始2026-02-11, 救治中"
    high = the(judge(hr.serious_illness, SERIOUS, serious("ill-2", "ABANDONED"),
                     facts=[kept(SERIOUS, serious("ill-1", "IN_TREATMENT"))]))
    assert (high.severity, high.event_ids) == (Severity.HIGH, ("ill-2",))
    assert high.reason.endswith("救治开始2026-02-11, 放弃救治")
    assert high.alert_id == medium.alert_id == fact_id(Rule.SERIOUS_ILLNESS, f"{PK}|急性白血病|2026-02-11")
    # another disease or another treatment is another alert
    assert the(judge(hr.serious_illness, SERIOUS, serious("ill-3", disease="肝癌"))).alert_id != medium.alert_id
    assert the(judge(hr.serious_illness, SERIOUS, serious("ill-4", start=dt.date(2026, 2, 12)))).alert_id != (
        medium.alert_id)


def test_a_treated_serious_illness_raises_nothing() -> None:
    assert nothing(judge(hr.serious_illness, SERIOUS, serious(status="TREATED")))


# --- CHRONIC_DISEASE -------------------------------------------------------------------------------------------------

CHRONIC_LABEL = {"HYPERTENSION": "高血压", "DIABETES": "糖尿病", "TUBERCULOSIS": "结核病",
                 "SEVERE_MENTAL_DISORDER": "严重精神障碍"}


@pytest.mark.parametrize("disease", list(CHRONIC_LABEL))
@pytest.mark.parametrize("status", ["MANAGED", "LOST_TO_FOLLOW_UP", "DECEASED", "CURED"])
def test_chronic_disease_by_disease_and_management_status(disease: str, status: str) -> None:
    event = chronic("chr-1", status, disease, diagnosed=dt.date(2024, 11, 2), reported=D)
    verdict = judge(hr.chronic_disease, CHRONIC, event)
    if status == "MANAGED" and disease in ("TUBERCULOSIS", "SEVERE_MENTAL_DISORDER"):
        severity, what, kind = Severity.MEDIUM, "在管", "managed"
    elif status == "LOST_TO_FOLLOW_UP":
        severity, what, kind = Severity.LOW, "失访", "lost"
    else:
        assert nothing(verdict)
        return
    draft = the(verdict)
    assert (draft.rule, draft.severity, draft.event_ids) == (Rule.CHRONIC_DISEASE, severity, ("chr-1",))
    assert draft.occurred_at == dt.date(2024, 11, 2)
    assert draft.reason == f"家庭成员(户主)患{CHRONIC_LABEL[disease]}(确诊2024-11-02), 管理状态: {what}"
    assert draft.alert_id == fact_id(Rule.CHRONIC_DISEASE, f"{PK}|{disease}|{kind}")


def test_one_chronic_alert_per_person_disease_and_status_class() -> None:
    a = the(judge(hr.chronic_disease, CHRONIC, chronic("chr-1", "MANAGED", "TUBERCULOSIS")))
    again = the(judge(hr.chronic_disease, CHRONIC, chronic("chr-2", "MANAGED", "TUBERCULOSIS", reported=TODAY)))
    lost = the(judge(hr.chronic_disease, CHRONIC, chronic("chr-3", "LOST_TO_FOLLOW_UP", "TUBERCULOSIS")))
    theirs = the(judge(hr.chronic_disease, CHRONIC, chronic("chr-4", "MANAGED", "TUBERCULOSIS", key=OTHER),
                       who=SPOUSE))
    assert a.alert_id == again.alert_id
    assert len({a.alert_id, lost.alert_id, theirs.alert_id}) == 3


# --- SEVERE_DISABILITY -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grade, status, label", [
    ("GRADE_1", "VALID", "一级"), ("GRADE_2", "VALID", "二级"), ("GRADE_3", "VALID", None),
    ("GRADE_4", "VALID", None), ("GRADE_1", "CANCELLED", None), ("GRADE_2", "EXPIRED", None),
])
def test_a_valid_certificate_of_grade_one_or_two_is_medium(grade: str, status: str, label: str | None) -> None:
    father = PersonContext(PK, HH, dt.date(1950, 3, 3), "父亲", VILLAGE)
    verdict = judge(hr.severe_disability, DISABILITY, disability(grade=grade, status=status), who=father)
    if label is None:
        assert nothing(verdict)
        return
    draft = the(verdict)
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.SEVERE_DISABILITY, Severity.MEDIUM, ("cert-1",), D)
    assert draft.reason == f"家庭成员(父亲)持有效残疾人证, 残疾等级{label}(发证2026-02-11), 重度残疾"
    assert draft.alert_id == fact_id(Rule.SEVERE_DISABILITY, PK)  # one per person: a new certificate is the same


# --- SAFETY_NET ------------------------------------------------------------------------------------------------------

ASSISTANCE_LABEL = {"MINIMUM_LIVING_GUARANTEE": "低保", "EXTREME_POVERTY_SUPPORT": "特困供养",
                    "DISABILITY_LIVING_ALLOWANCE": "困难残疾人生活补贴",
                    "SEVERE_DISABILITY_CARE_ALLOWANCE": "重度残疾人护理补贴", "TEMPORARY_ASSISTANCE": "临时救助"}


def safety_net_expected(kind: str, change: str, status: str) -> str | None:
    """docs/rules.md's three branches, as the words the reason uses; None: no alert."""
    basic = kind in ("MINIMUM_LIVING_GUARANTEE", "EXTREME_POVERTY_SUPPORT")
    if basic and change == "EXITED" and status == "MONITORING":
        return f"监测中家庭退出{ASSISTANCE_LABEL[kind]}"
    if kind == "TEMPORARY_ASSISTANCE" and change == "PAID":
        return "发放临时救助1500元"
    if basic and change == "ENROLLED" and status == "NOT_INCLUDED":
        return f"未纳入监测的家庭纳入{ASSISTANCE_LABEL[kind]}"
    return None


@pytest.mark.parametrize("kind, change, status", list(itertools.product(
    ASSISTANCE_LABEL, ["ENROLLED", "EXITED", "PAID"], ["NOT_INCLUDED", "MONITORING", "RISK_ELIMINATED"])))
def test_safety_net_every_combination(kind: str, change: str, status: str) -> None:
    verdict = judge(hr.safety_net, ASSISTANCE, assistance(kind=kind, change=change), hh=household(status))
    what = safety_net_expected(kind, change, status)
    if what is None:
        assert nothing(verdict)
        return
    draft = the(verdict)
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.SAFETY_NET, Severity.MEDIUM, ("sa-1",), D)
    assert draft.reason == f"社会救助: 家庭成员(户主){what}(开始日期2026-02-11)"
    assert draft.alert_id == event_id_of(Rule.SAFETY_NET, "sa-1")


# --- INSURANCE_GAP ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, status, label", [
    ("BASIC_MEDICAL", "NOT_ENROLLED", "未参保"), ("BASIC_MEDICAL", "SUSPENDED", "停保"),
    ("BASIC_MEDICAL", "ENROLLED", None), ("SERIOUS_ILLNESS", "NOT_ENROLLED", None),
    ("SERIOUS_ILLNESS", "SUSPENDED", None), ("MEDICAL_AID", "NOT_ENROLLED", None), ("MEDICAL_AID", "SUSPENDED", None),
])
def test_a_gap_in_basic_medical_insurance_is_medium(kind: str, status: str, label: str | None) -> None:
    verdict = judge(hr.insurance_gap, INSURANCE, insurance(kind=kind, status=status, year=2025), who=SPOUSE)
    if label is None:
        assert nothing(verdict)
        return
    draft = the(verdict)
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.INSURANCE_GAP, Severity.MEDIUM, ("ins-1",), dt.date(2025, 1, 1))
    assert draft.reason == f"家庭成员(配偶)2025年度基本医疗保险{label}, 看病就医缺少保障"
    assert draft.alert_id == fact_id(Rule.INSURANCE_GAP, f"{OTHER}|2025")
    next_year = judge(hr.insurance_gap, INSURANCE, insurance("ins-2", kind, status, 2026), who=SPOUSE)
    assert the(next_year).alert_id == fact_id(Rule.INSURANCE_GAP, f"{OTHER}|2026") != draft.alert_id


# --- LOAN_OVERDUE ----------------------------------------------------------------------------------------------------


def test_an_overdue_microcredit_loan_is_medium() -> None:
    draft = the(judge(hr.loan_overdue, DEPOSIT, deposit(loan="20000")))
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.LOAN_OVERDUE, Severity.MEDIUM, ("dep-1",), dt.date(2025, 4, 9))
    assert draft.reason == "家庭成员(户主)脱贫人口小额信贷逾期: 到期日期2025-04-09, 比对日期2025-06-30贷款余额20000元"
    assert draft.alert_id == fact_id(Rule.LOAN_OVERDUE, f"{PK}|2022-04-10|2025-04-09")
    # the next month's comparison of the same loan: the same alert
    again = the(judge(hr.loan_overdue, DEPOSIT, deposit("dep-2", loan="19000", compared=dt.date(2025, 7, 31))))
    assert again.alert_id == draft.alert_id and again.event_ids == ("dep-2",)


@pytest.mark.parametrize("kwargs", [
    {"loan": "20000", "due": dt.date(2025, 6, 30)},  # due on the 比对日期: not yet overdue
    {"loan": "20000", "due": dt.date(2025, 7, 1)},
    {"loan": "0"},
    {"loan": "20000", "due": None},
    {"loan": "20000", "kind": "BUSINESS_GUARANTEE"}, {"loan": "20000", "kind": "BUSINESS_OPERATING"},
    {"loan": "20000", "kind": "CONSUMER"}, {"loan": "20000", "kind": "OTHER"},
])
def test_no_overdue_alert(kwargs: dict[str, Any]) -> None:
    assert nothing(judge(hr.loan_overdue, DEPOSIT, deposit(**kwargs)))


def test_a_deposit_loan_row_is_judged_by_both_of_its_rules() -> None:
    feed = catalog.event_feed("pboc", "deposit-loan")
    verdict = hr.judge(feed.rules, deposit(balance="30000", loan="20000"), context(DEPOSIT))
    assert [(d.rule, d.severity) for d in verdict.drafts] == [(Rule.ASSET_PURCHASE, Severity.LOW),
                                                             (Rule.LOAN_OVERDUE, Severity.MEDIUM)]


# --- REPORTED_RISK ---------------------------------------------------------------------------------------------------

REPORT = "内容: 户主住院后无劳动力, 家庭收入锐减"


@pytest.mark.parametrize("channel, result, severity, reason", [
    ("SELF_DECLARATION", None, Severity.MEDIUM, f"农户自主申报(2026-03-05): 风险类型因病; {REPORT}"),
    ("SOCIAL_CLUE", None, Severity.MEDIUM, f"社会信息补充(2026-03-05): 风险类型因病; {REPORT}"),
    ("CADRE_SCREENING", "AT_RISK", Severity.MEDIUM,
     f"基层干部排查(2026-03-05): 风险类型因病, 走访结论: 存在风险; {REPORT}"),
    ("CADRE_SCREENING", "RELAPSED", Severity.HIGH,
     f"基层干部排查(2026-03-05): 风险类型因病, 走访结论: 已返贫; {REPORT}"),
    ("CADRE_SCREENING", "NORMAL", None, None),
])
def test_reported_risk_by_channel(channel: str, result: str | None, severity: Severity | None,
                                  reason: str | None) -> None:
    for who, head, household_id in ((HEAD, PK, None), (None, None, HH)):  # by the head's ID, or the 户编号 alone
        event = intake("rep-1", channel, result, head=head, household_id=household_id)
        verdict = judge(hr.reported_risk, CHANNEL_TOPIC[channel], event, who=who)
        if severity is None:
            assert nothing(verdict)
            continue
        draft = the(verdict)
        assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
            Rule.REPORTED_RISK, severity, ("rep-1",), dt.date(2026, 3, 5))
        assert draft.reason == reason
        assert draft.alert_id == event_id_of(Rule.REPORTED_RISK, "rep-1")


def test_a_public_opinion_clue_naming_a_person_is_medium() -> None:
    draft = the(judge(hr.reported_risk, OPINION, opinion()))
    assert (draft.rule, draft.severity, draft.event_ids, draft.occurred_at) == (
        Rule.REPORTED_RISK, Severity.MEDIUM, ("yq-1",), dt.date(2026, 3, 4))
    assert draft.reason == ("网络舆情线索(2026-03-04): 风险类型因灾, 线索编号YQ-2026-0042; "
                            "内容: 网友反映某户房屋因冰雹受损无人过问")


# =====================================================================================================================
# Through the household stage: real Avro messages, arrival order, timers, the changelog
# =====================================================================================================================


def registry_household(household_id: str = HH, status: str = "MONITORING", income_: str = "6000", size: int = 4,
                       village: str = VILLAGE) -> bytes:
    return CODEC.encode("povwatch.registry.Household", {
        "household_id": household_id, "village_code": village, "head_person_key": PK, "category": "UNSTABLE_LIFTED",
        "monitoring_status": status, "labour_capacity": "WEAK", "per_capita_income": Decimal(income_),
        "household_size": size, "ingested_at": INGESTED, "source": source("roster")})


def stage_of(*households: bytes, cfg: RuleConfig = CFG) -> HouseholdStage:
    stage = HouseholdStage({}, TrackedDict(), codec=CODEC, routes=ROUTES, rules=cfg, grace=dt.timedelta(days=3))
    for msg in households or (registry_household(),):
        assert stage.registry(CODEC.decode(msg).record["household_id"], msg, NOW) == []
    return stage


def message(topic_: str, event: Mapping[str, Any]) -> bytes:
    feed = catalog.feed_of_topic(topic_)
    assert feed is not None
    return CODEC.encode(feed.schema, {**event, "source": source(feed.feed)})


def joined(topic_: str, event: Mapping[str, Any], who: PersonContext | None = HEAD, household_id: str = HH) -> bytes:
    """The household stage's input: the event as the person stage joined it with its member."""
    return CODEC.encode("povwatch.monitor.HouseholdEvent", {
        "topic": topic_, "event": message(topic_, event), "person_key": who.person_key if who else None,
        "household_id": household_id, "relation": who.relation if who else None,
        "birth_date": who.birth_date if who else None, "village_code": who.village_code if who else ""})


def deliver(stage: HouseholdStage, topic_: str, event: Mapping[str, Any], now: dt.datetime = NOW,
            who: PersonContext | None = HEAD, household_id: str = HH) -> list[Emit]:
    return stage.event(ROUTES.household_events, joined(topic_, event, who, household_id), now)


def alerts_of(emits: list[Emit]) -> list[dict[str, Any]]:
    return household_alerts(emits)


def raised(emits: list[Emit]) -> set[tuple[str, str, str]]:
    return {(a["alert_id"], a["rule"], a["severity"]) for a in alerts_of(emits)}


def village_records(emits: list[Emit]) -> list[dict[str, Any]]:
    return decoded(emits, ROUTES.village_disasters, "povwatch.monitor.VillageDisaster")


# --- one death, one alert, whichever departments report it in whatever order ---------------------------------------

BORN = dt.date(1965, 3, 1)  # 61 from 2026-03-01 on
DEATH_BASE = dt.date(2026, 2, 20)


def death_report(department: str, day: dt.date) -> tuple[str, dict[str, Any]]:
    if department == "registration":
        return REGISTRATION, registration("reg-1", "DEATH", day)
    if department == "traffic":
        return TRAFFIC, traffic("acc-1", "DEATH", day)
    return CHRONIC, chronic("chr-1", "DECEASED", "HYPERTENSION", diagnosed=dt.date(2025, 6, 1), reported=day)


def deaths_through_the_stage(order: list[str], days: Mapping[str, dt.date]) -> list[dict[str, Any]]:
    stage = stage_of()
    who = PersonContext(PK, HH, BORN, "户主", VILLAGE)
    emits: list[Emit] = []
    for department in order:
        emits += deliver(stage, *death_report(department, days[department]), who=who)
    return [a for a in alerts_of(emits) if a["rule"] == "DEATH_IN_HOUSEHOLD"]


def check_one_death_alert(order: list[str], days: Mapping[str, dt.date]) -> None:
    alerts = deaths_through_the_stage(order, days)
    assert len(alerts) == len(order)  # each report re-emits the alert with the evidence so far
    assert {a["alert_id"] for a in alerts} == {fact_id(Rule.DEATH_IN_HOUSEHOLD, PK)}
    last = alerts[-1]
    reports = {event["event_id"]: topic_ for topic_, event in (death_report(d, days[d]) for d in order)}
    assert last["event_ids"] == sorted(reports)
    assert last["event_topics"] == [reports[e] for e in sorted(reports)]  # which department told what
    died = min(days[d] for d in order)
    assert last["occurred_at"] == died
    assert last["severity"] == ("HIGH" if died < dt.date(2026, 3, 1) else "MEDIUM")
    assert f"死亡日期{died:%Y-%m-%d}" in last["reason"]


@pytest.mark.parametrize("order", [list(p) for n in (2, 3) for p in itertools.permutations(
    ["registration", "traffic", "chronic"], n)])
def test_a_death_told_by_several_departments_is_one_alert_in_every_order(order: list[str]) -> None:
    days = {"registration": dt.date(2026, 2, 27), "traffic": dt.date(2026, 2, 27), "chronic": dt.date(2026, 3, 3)}
    check_one_death_alert(order, days)


@settings(max_examples=80, deadline=None)
@given(order=st.lists(st.sampled_from(["registration", "traffic", "chronic"]), min_size=2, max_size=3,
                      unique=True).flatmap(st.permutations),
       offsets=st.fixed_dictionaries({d: st.integers(0, 20) for d in ("registration", "traffic", "chronic")}))
def test_one_fact_one_alert_for_a_death_whatever_the_order_and_dates(order: list[str],
                                                                      offsets: dict[str, int]) -> None:
    check_one_death_alert(order, {d: DEATH_BASE + dt.timedelta(days=n) for d, n in offsets.items()})


def test_dropout_and_student_roll_through_the_stage_are_one_alert_in_either_order() -> None:
    reports = [(DROPOUT, dropout("drop-1", day=dt.date(2025, 10, 9))), (ROLL, roll("roll-1", day=dt.date(2026, 3, 2)))]
    for order in (reports, reports[::-1]):
        stage = stage_of()
        alerts = [a for t, e in order for a in alerts_of(deliver(stage, t, e, who=DAUGHTER))]
        assert [a["alert_id"] for a in alerts] == [fact_id(Rule.SCHOOL_DROPOUT, f"{CHILD}|2025")] * 2
        assert alerts[-1]["event_ids"] == ["drop-1", "roll-1"] and alerts[-1]["severity"] == "HIGH"
        assert alerts[-1]["event_topics"] == [DROPOUT, ROLL]


def test_serious_illness_escalates_under_one_id_through_the_stage() -> None:
    stage = stage_of()
    first = alerts_of(deliver(stage, SERIOUS, serious("ill-1", "IN_TREATMENT")))
    out = deliver(stage, SERIOUS, serious("ill-2", "ABANDONED"))
    second = alerts_of(out)
    assert [(a["severity"], a["event_ids"]) for a in first + second] == [("MEDIUM", ["ill-1"]), ("HIGH", ["ill-2"])]
    assert first[0]["alert_id"] == second[0]["alert_id"]
    # only the HIGH one counts for REGIONAL_RISK_CLUSTER
    assert [(r["rule"], r["event_id"]) for r in village_records(out)] == [
        ("REGIONAL_RISK_CLUSTER", second[0]["alert_id"])]


def test_reports_through_the_stage_by_the_heads_id_or_the_household_alone() -> None:
    stage = stage_of()
    out = deliver(stage, CHANNEL_TOPIC["CADRE_SCREENING"], intake("rep-1", "CADRE_SCREENING", "RELAPSED", head=None,
                                                                  household_id=HH), who=None)
    (alert,) = alerts_of(out)
    assert (alert["rule"], alert["severity"], alert["event_ids"]) == ("REPORTED_RISK", "HIGH", ["rep-1"])
    assert [r["rule"] for r in village_records(out)] == ["REGIONAL_RISK_CLUSTER"]
    normal = intake("rep-2", "CADRE_SCREENING", "NORMAL")
    assert alerts_of(deliver(stage, CHANNEL_TOPIC["CADRE_SCREENING"], normal)) == []
    (clue,) = alerts_of(deliver(stage, OPINION, opinion("yq-1")))
    assert (clue["rule"], clue["severity"], clue["event_topics"]) == ("REPORTED_RISK", "MEDIUM", [OPINION])


# --- INCOME_DROP whichever year arrives first ---------------------------------------------------------------------

YEARS = (2021, 2022, 2023, 2024, 2025)
FIGURES = ["4000", "8999.99", "9000", "11199.99", "11200", "16000", "20000", "30000"]
LONG_MEMORY = RuleConfig(history_horizon_days=3650)  # every year below stays within the horizon


def income_expected(rows: Mapping[int, str], status: str, cfg: RuleConfig = CFG) -> set[tuple[str, str, str]]:
    """The income alerts of these rows by docs/rules.md, written apart from the rule."""
    out = set()
    for year, text in rows.items():
        value = Decimal(text)
        if value < 9000:
            severity = "MEDIUM" if status == "MONITORING" else "HIGH"
            out.add((fact_id(Rule.INCOME_BELOW_LINE, str(year)), "INCOME_BELOW_LINE", severity))
        elif year - 1 in rows and value < Decimal(rows[year - 1]) * Decimal("0.7"):
            out.add((fact_id(Rule.INCOME_DROP, str(year)), "INCOME_DROP", "MEDIUM"))
    return out


def incomes_through_the_stage(rows: Mapping[int, str], order: Iterable[int], status: str = "MONITORING",
                              cfg: RuleConfig = CFG) -> set[tuple[str, str, str]]:
    stage = stage_of(registry_household(status=status), cfg=cfg)
    emits: list[Emit] = []
    for year in order:
        emits += deliver(stage, INCOME, income(f"inc-{year}", year, rows[year]))
    return raised(emits)


income_rows = st.lists(st.sampled_from(FIGURES), min_size=2, max_size=len(YEARS)).map(
    lambda figures: dict(zip(YEARS, figures)))


@settings(max_examples=120, deadline=None)
@given(rows=income_rows, status=st.sampled_from(["MONITORING", "NOT_INCLUDED", "RISK_ELIMINATED"]),
       data=st.data())
def test_income_alerts_are_the_same_whichever_year_arrives_first(rows: dict[int, str], status: str,
                                                                 data: st.DataObject) -> None:
    expected = income_expected(rows, status)
    assert incomes_through_the_stage(rows, sorted(rows), status, LONG_MEMORY) == expected
    for _ in range(3):
        order = data.draw(st.permutations(sorted(rows)))
        assert incomes_through_the_stage(rows, order, status, LONG_MEMORY) == expected


@pytest.mark.parametrize("order", list(itertools.permutations([2024, 2025])))
def test_this_and_last_years_income_in_either_order_with_the_default_horizon(order: tuple[int, ...]) -> None:
    rows = {2024: "16000", 2025: "11199.99"}
    assert incomes_through_the_stage(rows, order) == income_expected(rows, "MONITORING") == {
        (fact_id(Rule.INCOME_DROP, "2025"), "INCOME_DROP", "MEDIUM")}


def test_three_years_of_income_give_the_same_alerts_in_every_order_with_the_default_horizon() -> None:
    rows = {2023: "16000", 2024: "10000", 2025: "10500"}  # 2024 drops to 62% of 2023; 2025 does not drop
    expected = income_expected(rows, "MONITORING")
    assert expected == {(fact_id(Rule.INCOME_DROP, "2024"), "INCOME_DROP", "MEDIUM")}
    got = {order: incomes_through_the_stage(rows, order) for order in itertools.permutations(rows)}
    assert got == {order: expected for order in got}


# --- JOB_LOSS and WATER_UNSAFE timers, by the prefecture's date ----------------------------------------------------

JOB_END = dt.date(2026, 1, 1)
JOB_DUE = dt.date(2026, 3, 2)  # 60 days after JOB_END
JOB_KEY = f"{PK}|2026-01-01"
BEFORE_MIDNIGHT = dt.datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC)  # 2026-03-01 23:59:59 in Shanghai
AFTER_MIDNIGHT = dt.datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # already 2 March (01:00) in Shanghai
EARLIER = dt.datetime(2026, 2, 1, 4, 0, tzinfo=UTC)


def ended_job(event_id: str = "job-1") -> dict[str, Any]:
    return employment(event_id, dt.date(2025, 3, 1), JOB_END)


def test_the_job_loss_timer_fires_on_the_prefectures_date_exactly_once() -> None:
    stage = stage_of()
    assert alerts_of(deliver(stage, EMPLOYMENT, ended_job(), EARLIER)) == []
    assert stage.state[HH].timers == [Timer(Rule.JOB_LOSS.value, JOB_KEY, JOB_DUE, JOB_END, "job-1", PK)]
    assert stage.sweep(BEFORE_MIDNIGHT) == []  # still 1 March in the prefecture, though 2 March is near
    assert len(stage.state[HH].timers) == 1
    out = stage.sweep(AFTER_MIDNIGHT)
    (alert,) = alerts_of(out)
    assert (alert["rule"], alert["severity"], alert["event_ids"]) == ("JOB_LOSS", "MEDIUM", ["job-1"])
    assert alert["alert_id"] == fact_id(Rule.JOB_LOSS, JOB_KEY) and alert["occurred_at"] == JOB_END
    assert alert["event_topics"] == [EMPLOYMENT] and alert["raised_at"] == AFTER_MIDNIGHT
    assert "务工结束(江苏某纺织有限公司, 2026-01-01)后60天内未再就业" in alert["reason"]
    assert stage.state[HH].timers == []
    assert stage.sweep(AFTER_MIDNIGHT) == [] and stage.sweep(AFTER_MIDNIGHT + dt.timedelta(days=30)) == []


@pytest.mark.parametrize("now, on_arrival", [(BEFORE_MIDNIGHT, False), (AFTER_MIDNIGHT, True)])
def test_job_loss_on_arrival_when_the_prefectures_date_is_past_the_60_days(now: dt.datetime,
                                                                           on_arrival: bool) -> None:
    stage = stage_of()
    alerts = alerts_of(deliver(stage, EMPLOYMENT, ended_job(), now))
    if on_arrival:
        assert [(a["rule"], a["alert_id"]) for a in alerts] == [("JOB_LOSS", fact_id(Rule.JOB_LOSS, JOB_KEY))]
        assert "家庭成员(户主)务工结束" in alerts[0]["reason"]
        assert stage.state[HH].timers == []
    else:
        assert alerts == [] and [t.due for t in stage.state[HH].timers] == [JOB_DUE]


@pytest.mark.parametrize("start_after, cancelled", [(1, True), (60, True), (61, False)])
def test_a_new_job_reported_before_the_date_cancels_the_timer(start_after: int, cancelled: bool) -> None:
    stage = stage_of()
    deliver(stage, EMPLOYMENT, ended_job(), EARLIER)
    new = employment("job-2", JOB_END + dt.timedelta(days=start_after), employer="博乐市某物流公司")
    assert alerts_of(deliver(stage, EMPLOYMENT, new, EARLIER + dt.timedelta(days=5))) == []
    assert (stage.state[HH].timers == []) is cancelled
    assert [a["rule"] for a in alerts_of(stage.sweep(AFTER_MIDNIGHT))] == ([] if cancelled else ["JOB_LOSS"])


def test_a_new_job_arriving_before_the_end_row_means_no_timer() -> None:
    stage = stage_of()
    deliver(stage, EMPLOYMENT, employment("job-2", JOB_END + dt.timedelta(days=20)), EARLIER)
    assert alerts_of(deliver(stage, EMPLOYMENT, ended_job(), EARLIER)) == []
    assert stage.state[HH].timers == [] and stage.sweep(AFTER_MIDNIGHT) == []


def test_the_water_timer_escalates_the_same_alert_and_a_resolution_cancels_it() -> None:
    found = dt.date(2026, 1, 31)  # due 2026-03-02
    stage = stage_of()
    (medium,) = alerts_of(deliver(stage, WATER, water("wat-1", found=found), EARLIER))
    assert (medium["rule"], medium["severity"]) == ("WATER_UNSAFE", "MEDIUM")
    assert stage.sweep(BEFORE_MIDNIGHT) == []
    out = stage.sweep(AFTER_MIDNIGHT)
    (high,) = alerts_of(out)
    assert (high["severity"], high["alert_id"], high["event_ids"]) == ("HIGH", medium["alert_id"], ["wat-1"])
    assert high["reason"] == "饮水安全问题(水质), 发现日期2026-01-31, 尚未解决, 已超过30天"
    # the escalated HIGH alert counts for REGIONAL_RISK_CLUSTER
    assert [(r["rule"], r["event_id"], r["village_code"]) for r in village_records(out)] == [
        ("REGIONAL_RISK_CLUSTER", high["alert_id"], VILLAGE)]
    assert stage.sweep(AFTER_MIDNIGHT) == []

    resolved = stage_of()
    deliver(resolved, WATER, water("wat-1", found=found), EARLIER)
    assert alerts_of(deliver(resolved, WATER, water("wat-2", found=found, resolved=dt.date(2026, 2, 10)),
                             EARLIER)) == []
    assert resolved.state[HH].timers == [] and resolved.sweep(AFTER_MIDNIGHT) == []

    first = stage_of()  # the resolution arrives before the row it resolves
    assert alerts_of(deliver(first, WATER, water("wat-2", found=found, resolved=dt.date(2026, 2, 10)),
                             EARLIER)) == []
    assert alerts_of(deliver(first, WATER, water("wat-1", found=found), EARLIER)) == []
    assert first.state[HH].timers == [] and first.sweep(AFTER_MIDNIGHT) == []


# --- timers survive the changelog and a restart ---------------------------------------------------------------------


def test_timers_survive_the_changelog_and_fire_once_on_a_fresh_stage() -> None:
    stage = stage_of()
    deliver(stage, DROPOUT, dropout("drop-1"), EARLIER, who=DAUGHTER)  # an alert: the household is profiled
    deliver(stage, EMPLOYMENT, ended_job(), EARLIER)
    deliver(stage, WATER, water("wat-1", found=dt.date(2026, 2, 10)), EARLIER + dt.timedelta(days=14))  # due 03-12
    state = stage.state[HH]
    assert state.profiled and [t.rule for t in state.timers] == ["JOB_LOSS", "WATER_UNSAFE"]
    back = HOUSEHOLD_STATE.decode(CODEC, HOUSEHOLD_STATE.encode(CODEC, state))
    assert back == state
    assert back.timers == state.timers and back.profiled is True and back.facts == state.facts

    # another worker takes the partition: its tables are the registry and the changelog, nothing else
    fresh = stage_of()
    fresh.state[HH] = back
    assert fresh.sweep(BEFORE_MIDNIGHT) == []
    out = fresh.sweep(AFTER_MIDNIGHT)
    assert [(a["rule"], a["alert_id"]) for a in alerts_of(out)] == [("JOB_LOSS", fact_id(Rule.JOB_LOSS, JOB_KEY))]
    assert [e.topic for e in fresh.flush(AFTER_MIDNIGHT)] == [ROUTES.profiles]  # profiled: its profile follows
    assert fresh.sweep(AFTER_MIDNIGHT) == [] and fresh.flush(AFTER_MIDNIGHT) == []
    later = dt.datetime(2026, 3, 11, 16, 0, tzinfo=UTC)  # 2026-03-12 00:00 in Shanghai
    assert fresh.sweep(later - dt.timedelta(seconds=1)) == []
    assert [(a["rule"], a["severity"]) for a in alerts_of(fresh.sweep(later))] == [("WATER_UNSAFE", "HIGH")]
    assert fresh.sweep(later) == [] and fresh.state[HH].timers == []
    # and the state written after firing has no timer left to fire twice after another restart
    again = HOUSEHOLD_STATE.decode(CODEC, HOUSEHOLD_STATE.encode(CODEC, fresh.state[HH]))
    assert again.timers == [] and again.profiled
    rebuilt = stage_of()
    rebuilt.state[HH] = again
    assert rebuilt.sweep(later + dt.timedelta(days=100)) == []


def test_a_households_timers_go_when_it_leaves_the_roster() -> None:
    stage = stage_of()
    deliver(stage, EMPLOYMENT, ended_job(), EARLIER)
    stage.registry(HH, None, EARLIER)
    assert stage.sweep(AFTER_MIDNIGHT) == [] and (HH not in stage.state or stage.state[HH].timers == [])


# --- what the regional rules get from the household stage -----------------------------------------------------------


def test_only_high_household_alerts_count_for_the_risk_cluster() -> None:
    drafts = [AlertDraft(Rule.HOUSING_UNSAFE, Severity.MEDIUM, HH, VILLAGE, "", ("hs-1",), D),
              AlertDraft(Rule.ASSET_PURCHASE, Severity.LOW, HH, VILLAGE, "", ("car-1",), D),
              AlertDraft(Rule.HOUSING_UNSAFE, Severity.HIGH, HH, VILLAGE, "", ("hs-2",), D)]
    feed = catalog.event_feed("housing", "house-safety")
    records, regions = regional_records(feed, house("hs-2", grade="D"), HOUSEHOLD, drafts)
    assert records == [VillageRecord(HH, drafts[2].alert_id, D, Rule.REGIONAL_RISK_CLUSTER.value)]
    assert regions == [VILLAGE]


def test_an_ended_job_is_counted_for_the_township_and_a_farm_row_for_the_village() -> None:
    stage = stage_of()
    out = deliver(stage, EMPLOYMENT, ended_job(), EARLIER)
    assert village_records(out) == [{"village_code": "652701100", "household_id": HH, "event_id": "job-1",
                                     "disaster_date": JOB_END, "rule": "REGIONAL_RETURNS", "person_key": PK,
                                     "group": ""}]
    assert [e.key for e in out if e.topic == ROUTES.village_disasters] == [b"652701100"]
    assert village_records(deliver(stage, EMPLOYMENT, employment("job-9", dt.date(2026, 1, 5)), EARLIER)) == []
    out = deliver(stage, FARM, farm("farm-1", loss="12000"), EARLIER)
    assert [(r["rule"], r["event_id"], r["disaster_date"]) for r in village_records(out)] == [
        ("REGIONAL_DISASTER", "farm-1", D), ("REGIONAL_RISK_CLUSTER", event_id_of(Rule.DISASTER_LOSS, "farm-1"), D)]


# --- events dated long before the fact they report ------------------------------------------------------------------

OLD_ROWS = {
    # a chronic-disease row is dated by its 确诊日期, an employment row by its 务工开始日期, a certificate by its
    # 发证日期: years before the death, the job's end or today
    "chronic-managed": (CHRONIC, chronic("chr-1", "MANAGED", "TUBERCULOSIS", diagnosed=dt.date(2020, 5, 1),
                                         reported=dt.date(2026, 3, 3)), "CHRONIC_DISEASE"),
    "chronic-death": (CHRONIC, chronic("chr-1", "DECEASED", "HYPERTENSION", diagnosed=dt.date(2020, 5, 1),
                                       reported=dt.date(2026, 3, 3)), "DEATH_IN_HOUSEHOLD"),
    "disability": (DISABILITY, disability("cert-1", "GRADE_1", "VALID", issued=dt.date(2019, 5, 1)),
                   "SEVERE_DISABILITY"),
    "employment": (EMPLOYMENT, employment("job-1", dt.date(2021, 3, 1), dt.date(2025, 12, 1)), "JOB_LOSS"),
}


@pytest.mark.parametrize("name", list(OLD_ROWS))
def test_a_row_dated_years_ago_is_judged_whatever_the_household_reported_before(name: str) -> None:
    topic_, event, rule = OLD_ROWS[name]

    def run(old_first: bool) -> set[str]:
        stage = stage_of()
        steps = [(topic_, event, HEAD), (DROPOUT, dropout("drop-1", day=dt.date(2026, 3, 2)), DAUGHTER)]
        emits = [e for t, ev, who in (steps if old_first else steps[::-1]) for e in deliver(stage, t, ev, who=who)]
        return {a["rule"] for a in alerts_of(emits)}

    assert run(old_first=True) == {rule, "SCHOOL_DROPOUT"}
    assert run(old_first=False) == {rule, "SCHOOL_DROPOUT"}


def test_healths_report_of_a_death_diagnosed_years_ago_joins_the_alert() -> None:
    stage = stage_of()
    first = alerts_of(deliver(stage, REGISTRATION, registration("reg-1", "DEATH", dt.date(2026, 3, 1))))
    second = alerts_of(deliver(stage, CHRONIC, chronic("chr-1", "DECEASED", diagnosed=dt.date(2019, 7, 1),
                                                       reported=dt.date(2026, 3, 5))))
    assert [a["alert_id"] for a in first + second] == [fact_id(Rule.DEATH_IN_HOUSEHOLD, PK)] * 2
    assert second[0]["event_ids"] == ["chr-1", "reg-1"]
