"""The pure risk rules (services.monitor.rules), branch by branch, on the boundaries the issue sets."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from schemas import catalog
from schemas.codec import default_codec
from services.monitor import household_rules
from services.monitor.rules import (
    AlertDraft,
    Context,
    HouseholdContext,
    MedicalStay,
    PersonContext,
    RegionalDraft,
    Rule,
    RuleConfig,
    Severity,
    VillageRecord,
    age_at,
    disaster_loss,
    format_cny,
    medical_expense,
    regional_disaster,
    regional_period,
)
from services.monitor.stages import (
    household_alert_record,
    household_stage,
    regional_alert_record,
)
from services.monitor.state import Fact

CFG = RuleConfig()
TODAY = dt.date(2026, 12, 3)


def _ctx(topic: str, person: PersonContext | None, household: HouseholdContext, cfg: RuleConfig,
         stays: list[MedicalStay] | None = None, facts: list[Fact] | None = None) -> Context:
    return Context(topic, person, household, facts or [], stays or [], TODAY, cfg)


def _only(verdict: household_rules.Verdict) -> AlertDraft | None:
    assert len(verdict.drafts) <= 1
    return verdict.drafts[0] if verdict.drafts else None


# The rules of one event, called as the household stage calls them (event, Context).
def death_in_household(event: dict[str, Any], person: PersonContext, household: HouseholdContext,
                       cfg: RuleConfig) -> AlertDraft | None:
    return _only(household_rules.death_in_household(event, _ctx(catalog.REGISTRATION_CHANGE.topic, person,
                                                                  household, cfg)))


def school_dropout(event: dict[str, Any], person: PersonContext, household: HouseholdContext,
                   cfg: RuleConfig) -> AlertDraft | None:
    return _only(household_rules.school_dropout(event, _ctx(catalog.DROPOUT.topic, person, household, cfg)))


def asset_purchase(event: dict[str, Any], person: PersonContext, household: HouseholdContext,
                   cfg: RuleConfig) -> AlertDraft | None:
    return _only(household_rules.asset_purchase(event, _ctx(catalog.VEHICLE_PURCHASE.topic, person, household, cfg)))


def evaluate(rules: tuple[str, ...], event: dict[str, Any], person: PersonContext, household: HouseholdContext,
             stays: list[MedicalStay], cfg: RuleConfig) -> tuple[list[AlertDraft], list[MedicalStay] | None]:
    topic = next((f.topic for f in catalog.monitored_feeds() if f.rules == rules), "")
    verdict = household_rules.judge(rules, event, _ctx(topic, person, household, cfg, stays))
    return verdict.drafts, verdict.stays
HH = "BL-100201-0001"
VILLAGE = "652701100201"
# annual net income 6000 x 4 = 24000 CNY; half of it, the medical and disaster threshold, is 12000
HOUSEHOLD = HouseholdContext(HH, VILLAGE, "MONITORING", Decimal("6000"), 4)
CHANGE_DAY = dt.date(2024, 5, 2)
ADMITTED = dt.date(2024, 6, 10)


def person(birth: dt.date = dt.date(1980, 1, 1), relation: str = "户主") -> PersonContext:
    return PersonContext("k" * 64, HH, birth, relation, VILLAGE)


def household(status: str = "MONITORING", income: str = "6000", size: int = 4) -> HouseholdContext:
    return HouseholdContext(HH, VILLAGE, status, Decimal(income), size)


def registration(change: str = "DEATH", day: dt.date = CHANGE_DAY, event_id: str = "reg-1") -> dict[str, Any]:
    return {"event_id": event_id, "change_type": change, "change_date": day, "occurred_at": day, "remark": None}


def hospital(oop: str, admitted: dt.date = ADMITTED, event_id: str = "hosp-1") -> dict[str, Any]:
    return {"event_id": event_id, "admission_date": admitted, "out_of_pocket": Decimal(oop), "disease": "脑梗死",
            "days": 12, "total_cost": Decimal(oop) * 2, "occurred_at": admitted}


def stay(days_before: int, oop: str, event_id: str) -> MedicalStay:
    return MedicalStay(event_id, ADMITTED - dt.timedelta(days=days_before), Decimal(oop))


def disaster(*, deaths: int = 0, damage: str = "NONE", loss: str = "1000", event_id: str = "dis-1"
             ) -> dict[str, Any]:
    return {"event_id": event_id, "disaster_type": "FLOOD", "disaster_date": dt.date(2024, 6, 20), "deaths": deaths,
            "occurred_at": dt.date(2024, 6, 20), "injuries": 2, "house_damage": damage, "direct_loss": Decimal(loss),
            "village_code": VILLAGE}


def dropout(stage: str) -> dict[str, Any]:
    return {"event_id": "drop-1", "stage": stage, "grade": "八年级", "school": "博乐市第三中学",
            "dropout_date": dt.date(2024, 3, 11), "occurred_at": dt.date(2024, 3, 11)}


def vehicle(price: str | None = "119800") -> dict[str, Any]:
    return {"event_id": "car-1", "vehicle_type": "小型轿车", "model": "比亚迪秦PLUS",
            "purchase_date": dt.date(2024, 5, 1), "registration_date": dt.date(2024, 5, 8),
            "price": None if price is None else Decimal(price)}


# --- death in household ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("birth, age, severity", [
    (dt.date(2008, 5, 2), 16, Severity.HIGH),  # sixteenth birthday on the change date
    (dt.date(2008, 5, 3), 15, Severity.MEDIUM),  # birthday the day after the change date: still 15
    (dt.date(1964, 5, 2), 60, Severity.HIGH),
    (dt.date(1963, 5, 3), 60, Severity.HIGH),  # would turn 61 the next day
    (dt.date(1963, 5, 2), 61, Severity.MEDIUM),
    (dt.date(1940, 1, 1), 84, Severity.MEDIUM),
])
def test_death_severity_by_working_age(birth: dt.date, age: int, severity: Severity) -> None:
    assert age_at(birth, CHANGE_DAY) == age
    draft = death_in_household(registration(), person(birth, "子"), HOUSEHOLD, CFG)
    assert draft is not None
    assert draft.severity is severity
    assert (draft.rule, draft.household_id, draft.village_code) == (Rule.DEATH_IN_HOUSEHOLD, HH, VILLAGE)
    assert draft.event_ids == ("reg-1",) and draft.occurred_at == CHANGE_DAY
    assert f"时年{age}岁" in draft.reason and "家庭成员(子)死亡, 死亡日期2024-05-02" in draft.reason
    assert "报告: 公安户籍变动: 死亡(2024-05-02)" in draft.reason
    assert ("属劳动年龄(16-60岁), 家庭失去劳动力" in draft.reason) == (severity is Severity.HIGH)
    assert ("不在劳动年龄(16-60岁)" in draft.reason) == (severity is Severity.MEDIUM)


def test_cancelled_registration_counts_as_a_death() -> None:
    draft = death_in_household(registration("CANCELLED"), person(dt.date(1980, 1, 1)), HOUSEHOLD, CFG)
    assert draft is not None and draft.severity is Severity.HIGH
    assert "公安户籍变动: 注销" in draft.reason


@pytest.mark.parametrize("change", ["MOVE_OUT", "BIRTH", "MARRY_IN", "MARRY_OUT"])
def test_other_registration_changes_raise_nothing(change: str) -> None:
    assert death_in_household(registration(change), person(), HOUSEHOLD, CFG) is None


def test_working_age_band_is_configurable() -> None:
    cfg = RuleConfig(death_working_age_max=65)
    draft = death_in_household(registration(), person(dt.date(1963, 5, 2)), HOUSEHOLD, cfg)
    assert draft is not None and draft.severity is Severity.HIGH and "16-65岁" in draft.reason


def test_age_at_leap_day_birthday() -> None:
    assert age_at(dt.date(2008, 2, 29), dt.date(2024, 2, 28)) == 15
    assert age_at(dt.date(2008, 2, 29), dt.date(2024, 2, 29)) == 16
    assert age_at(dt.date(2008, 2, 29), dt.date(2023, 3, 1)) == 15


# --- medical expense -------------------------------------------------------------------------------------------


def medical(event: dict[str, Any], history: list[MedicalStay] | None = None, hh: HouseholdContext = HOUSEHOLD,
            cfg: RuleConfig = CFG) -> tuple[list[AlertDraft], list[MedicalStay]]:
    return medical_expense(event, person(relation="配偶"), hh, history or [], cfg)


def only(drafts: list[AlertDraft]) -> AlertDraft:
    assert len(drafts) == 1, drafts
    return drafts[0]


def test_exactly_half_the_income_is_high() -> None:
    draft = only(medical(hospital("12000"))[0])
    assert (draft.rule, draft.severity) == (Rule.MEDICAL_EXPENSE, Severity.HIGH)
    assert draft.event_ids == ("hosp-1",) and draft.occurred_at == ADMITTED
    assert "住院个人自付12000元(入院2024-06-10, 脑梗死, 12天" in draft.reason
    assert "近365天家庭住院自付合计12000元(1次)" in draft.reason
    assert "家庭年纯收入24000元(人均6000元×4人)的50%" in draft.reason


def test_just_below_half_with_a_large_stay_is_medium() -> None:
    draft = only(medical(hospital("11999.99"))[0])
    assert draft.severity is Severity.MEDIUM
    assert draft.event_ids == ("hosp-1",)
    assert "住院个人自付11999.99元" in draft.reason and "单次自付达到10000元" in draft.reason


def test_stay_of_exactly_ten_thousand_is_medium_and_just_below_is_nothing() -> None:
    assert only(medical(hospital("10000"))[0]).severity is Severity.MEDIUM
    drafts, history = medical(hospital("9999.99"))
    assert drafts == []
    assert history == [MedicalStay("hosp-1", ADMITTED, Decimal("9999.99"))]  # remembered all the same


def test_window_holds_the_365_days_up_to_this_admission() -> None:
    # 364 days before is inside the window: 2000.01 + 9999.99 = 12000 -> HIGH, both stays cited
    inside = only(medical(hospital("9999.99"), [stay(364, "2000.01", "hosp-0")])[0])
    assert inside.severity is Severity.HIGH
    assert sorted(inside.event_ids) == ["hosp-0", "hosp-1"]
    assert "近365天家庭住院自付合计12000元(2次)" in inside.reason
    # exactly 365 days before is the 366th day: out -> this stay alone, below 10000 -> nothing
    assert medical(hospital("9999.99"), [stay(365, "2000.01", "hosp-0")])[0] == []


def test_a_stay_on_the_same_day_counts() -> None:
    draft = only(medical(hospital("6000"), [stay(0, "6000", "hosp-0")])[0])
    assert draft.severity is Severity.HIGH and sorted(draft.event_ids) == ["hosp-0", "hosp-1"]


def test_stays_after_this_admission_do_not_count_for_it() -> None:
    later = MedicalStay("hosp-2", ADMITTED + dt.timedelta(days=1), Decimal("5000"))
    drafts, _ = medical(hospital("9000"), [later])
    # nothing is raised for this admission (9000 alone) ...
    assert [d for d in drafts if d.occurred_at == ADMITTED] == []
    # ... the later stay, re-judged with this one reported late, reaches 14000 >= 12000
    late = only(drafts)
    assert late.occurred_at == later.admission_date and late.severity is Severity.HIGH
    assert sorted(late.event_ids) == ["hosp-1", "hosp-2"]


def test_same_event_in_history_is_not_counted_twice() -> None:
    # the redelivered stay itself is in the history: 7000, not 14000
    assert medical(hospital("7000"), [MedicalStay("hosp-1", ADMITTED, Decimal("7000"))])[0] == []
    assert only(medical(hospital("7000"), [stay(10, "7000", "hosp-0")])[0]).severity is Severity.HIGH


def test_arrival_order_does_not_change_the_alert() -> None:
    early = hospital("7000", ADMITTED - dt.timedelta(days=60), "hosp-a")
    late = hospital("7000", ADMITTED, "hosp-b")
    drafts_in_order, history = medical(early)
    assert drafts_in_order == []
    in_order = only(medical(late, history)[0])
    drafts_reversed, history = medical(late)
    assert drafts_reversed == []
    reversed_order = only(medical(early, history)[0])
    assert in_order.alert_id == reversed_order.alert_id
    assert in_order.occurred_at == reversed_order.occurred_at == ADMITTED
    assert sorted(in_order.event_ids) == sorted(reversed_order.event_ids) == ["hosp-a", "hosp-b"]


def test_zero_income_household_is_always_high() -> None:
    draft = only(medical(hospital("1"), hh=household(income="0"))[0])
    assert draft.severity is Severity.HIGH and "无收入可比" in draft.reason


def test_history_is_pruned_at_the_horizon_before_the_latest_admission() -> None:
    # kept: stays up to history_horizon_days (730) before the latest admission, beyond the 365-day window on purpose
    history = [stay(800, "100", "old"), stay(730, "100", "edge"), stay(729, "100", "kept"), stay(400, "100", "past"),
               stay(3, "100", "near")]
    _, new = medical(hospital("50"), history)
    assert [s.event_id for s in new] == ["kept", "past", "near", "hosp-1"]
    # a late stay older than the horizon is dropped at once; the horizon follows the latest admission
    _, new = medical(hospital("50", ADMITTED - dt.timedelta(days=731), "ancient"), [stay(0, "100", "now")])
    assert [s.event_id for s in new] == ["now"]
    _, new = medical(hospital("50", ADMITTED - dt.timedelta(days=729), "late"), [stay(0, "100", "now")])
    assert [s.event_id for s in new] == ["late", "now"]
    cfg = RuleConfig(history_horizon_days=400)
    _, new = medical(hospital("50"), history, cfg=cfg)
    assert [s.event_id for s in new] == ["near", "hosp-1"]


def test_medical_thresholds_are_configurable() -> None:
    cfg = RuleConfig(medical_income_share=Decimal("0.25"), medical_stay_out_of_pocket=Decimal("5000"))
    assert only(medical(hospital("6000"), cfg=cfg)[0]).severity is Severity.HIGH  # 6000 = 25% of 24000
    assert only(medical(hospital("5000"), cfg=cfg)[0]).severity is Severity.MEDIUM
    cfg = RuleConfig(medical_window_days=30)
    assert medical(hospital("9999.99"), [stay(30, "2000.01", "hosp-0")], cfg=cfg)[0] == []
    assert only(medical(hospital("9999.99"), [stay(29, "2000.01", "hosp-0")], cfg=cfg)[0]).severity is Severity.HIGH


# --- disaster loss ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, grave", [
    ({"deaths": 1}, "死亡1人"),
    ({"damage": "COLLAPSED"}, "房屋倒塌"),
    ({"damage": "SERIOUS"}, "房屋严重损坏"),
    ({"loss": "12000"}, "损失达家庭年纯收入的50%"),
])
def test_grave_disaster_is_high(kwargs: dict[str, Any], grave: str) -> None:
    draft = disaster_loss(disaster(**kwargs), HOUSEHOLD, CFG)
    assert (draft.rule, draft.severity) == (Rule.DISASTER_LOSS, Severity.HIGH)
    assert "; 严重: " in draft.reason and grave in draft.reason.split("; 严重: ")[1]
    assert draft.occurred_at == dt.date(2024, 6, 20) and draft.event_ids == ("dis-1",)


@pytest.mark.parametrize("damage, loss", [("MINOR", "3000"), ("NONE", "11999.99")])
def test_lesser_disaster_is_medium(damage: str, loss: str) -> None:
    draft = disaster_loss(disaster(damage=damage, loss=loss), HOUSEHOLD, CFG)
    assert draft.severity is Severity.MEDIUM
    assert "严重" not in draft.reason


def test_disaster_reason_has_the_figures() -> None:
    draft = disaster_loss(disaster(deaths=1, damage="COLLAPSED", loss="52000"), HOUSEHOLD, CFG)
    assert draft.reason.startswith("洪涝灾害(2024-06-20): 死亡1人, 受伤2人, 房屋倒塌, 直接经济损失52000元, "
                                   "占家庭年纯收入24000元的217%")
    assert draft.reason.endswith("; 严重: 死亡1人, 房屋倒塌, 损失达家庭年纯收入的50%")


def test_disaster_ignores_monitoring_status() -> None:
    assert disaster_loss(disaster(), household("NOT_INCLUDED"), CFG).severity is Severity.MEDIUM


# --- dropout, asset purchase -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage, label", [("PRIMARY", "小学"), ("JUNIOR", "初中")])
def test_compulsory_education_dropout_is_high(stage: str, label: str) -> None:
    draft = school_dropout(dropout(stage), person(dt.date(2010, 3, 12), "孙子"), HOUSEHOLD, CFG)
    assert draft is not None and (draft.rule, draft.severity) == (Rule.SCHOOL_DROPOUT, Severity.HIGH)
    assert draft.reason == (f"义务教育阶段辍学: {label}八年级, 博乐市第三中学, 辍学日期2024-03-11(2023-2024学年), "
                            "学生13岁(孙子); 报告: 教育辍学登记")


@pytest.mark.parametrize("stage", ["SENIOR", "VOCATIONAL"])
def test_dropout_after_compulsory_education_raises_nothing(stage: str) -> None:
    assert school_dropout(dropout(stage), person(), HOUSEHOLD, CFG) is None


def test_vehicle_in_a_monitored_household_is_low() -> None:
    draft = asset_purchase(vehicle(), person(relation="子"), HOUSEHOLD, CFG)
    assert draft is not None and (draft.rule, draft.severity) == (Rule.ASSET_PURCHASE, Severity.LOW)
    assert "监测中家庭成员(子)购买车辆: 小型轿车 比亚迪秦PLUS, 购买日期2024-05-01, 购车价格119800元" in draft.reason
    without_price = asset_purchase(vehicle(None), person(), HOUSEHOLD, CFG)
    assert without_price is not None and "购车价格" not in without_price.reason


@pytest.mark.parametrize("status", ["NOT_INCLUDED", "RISK_ELIMINATED"])
def test_vehicle_elsewhere_raises_nothing(status: str) -> None:
    assert asset_purchase(vehicle(), person(), household(status), CFG) is None


# --- dispatch, identity, formatting ----------------------------------------------------------------------------


def test_evaluate_dispatches_by_the_feeds_declared_rules() -> None:
    drafts, history = evaluate(catalog.DROPOUT.rules, dropout("PRIMARY"), person(), HOUSEHOLD, [], CFG)
    assert [d.rule for d in drafts] == [Rule.SCHOOL_DROPOUT] and history is None
    drafts, history = evaluate(catalog.HOSPITALIZATION.rules, hospital("100"), person(), HOUSEHOLD, [], CFG)
    assert drafts == [] and history == [MedicalStay("hosp-1", ADMITTED, Decimal("100"))]
    assert evaluate(catalog.REGISTRATION_CHANGE.rules, registration("BIRTH"), person(), HOUSEHOLD, [], CFG) == (
        [], None)
    # a feed with no household rule (facts only) raises nothing, whatever its record
    assert evaluate((), {"event_id": "x"}, person(), HOUSEHOLD, [], CFG) == ([], None)


def test_every_declared_rule_is_implemented() -> None:
    from schemas.alerts import REGIONAL_RULES
    from services.monitor.household_rules import EVENT_RULES

    declared = {rule for feed in catalog.monitored_feeds() for rule in feed.rules}
    judged_with = {Rule.INCOME_DROP}  # judged by the INCOME_BELOW_LINE function, from the same rows
    assert declared <= set(EVENT_RULES) | REGIONAL_RULES | judged_with
    assert set(Rule) == set(EVENT_RULES) | REGIONAL_RULES | judged_with
    assert {Rule(r) for r in declared} | {Rule.REGIONAL_RISK_CLUSTER} == set(Rule)  # the cluster counts alerts


def test_alert_id_is_deterministic_and_order_independent() -> None:
    def draft(rule: Rule, household_id: str, ids: tuple[str, ...], reason: str = "x") -> AlertDraft:
        return AlertDraft(rule, Severity.HIGH, household_id, VILLAGE, reason, ids, ADMITTED)

    base = draft(Rule.MEDICAL_EXPENSE, HH, ("a", "b"))
    assert base.alert_id == draft(Rule.MEDICAL_EXPENSE, HH, ("b", "a"), reason="other words").alert_id
    assert len(base.alert_id) == 32 and int(base.alert_id, 16) >= 0
    assert base.alert_id != draft(Rule.DISASTER_LOSS, HH, ("a", "b")).alert_id
    assert base.alert_id != draft(Rule.MEDICAL_EXPENSE, "BL-100201-0002", ("a", "b")).alert_id
    assert base.alert_id != draft(Rule.MEDICAL_EXPENSE, HH, ("a",)).alert_id
    # the same event re-evaluated gives the same id
    first = death_in_household(registration(), person(), HOUSEHOLD, CFG)
    again = death_in_household(registration(), person(), HOUSEHOLD, CFG)
    assert first is not None and again is not None and first.alert_id == again.alert_id


@pytest.mark.parametrize("amount, text", [("14500", "14500元"), ("14500.00", "14500元"), ("1234.5", "1234.50元"),
                                          ("0", "0元"), ("9999.99", "9999.99元"),
                                          ("119800.10", "119800.10元")])
def test_format_cny(amount: str, text: str) -> None:
    assert format_cny(Decimal(amount)) == text


def test_rule_config_rejects_unknown_and_invalid_settings() -> None:
    with pytest.raises(ValueError):
        RuleConfig(regional_min_households=1)
    with pytest.raises(ValueError):
        RuleConfig(unknown_threshold=3)  # type: ignore[call-arg]


# --- regional --------------------------------------------------------------------------------------------------

D0 = dt.date(2024, 6, 20)  # the second day of its 8-day period (2024-06-19 .. 2024-06-26)
P0 = D0.toordinal() // 8


def records(*days: int, households: list[str] | None = None) -> list[VillageRecord]:
    ids = households or [f"H{i}" for i in range(len(days))]
    return [VillageRecord(hh, f"dis-{hh}-{d}", D0 + dt.timedelta(days=d)) for hh, d in zip(ids, days)]


def one(drafts: list[RegionalDraft]) -> RegionalDraft:
    assert len(drafts) == 1, drafts
    return drafts[0]


def test_regional_period_is_a_fixed_run_of_window_plus_one_days() -> None:
    assert regional_period(dt.date(2024, 6, 19), CFG) == regional_period(dt.date(2024, 6, 26), CFG) == P0
    assert regional_period(dt.date(2024, 6, 18), CFG) == P0 - 1
    assert regional_period(dt.date(2024, 6, 27), CFG) == P0 + 1
    nine = RuleConfig(regional_window_days=8)
    assert regional_period(D0, nine) == D0.toordinal() // 9
    assert regional_period(dt.date(1, 1, 1), CFG) == 0  # counted from 0001-01-01 (ordinal 1)


def test_four_households_raise_nothing() -> None:
    assert regional_disaster(VILLAGE, records(0, 0, 1, 2), [], CFG) == []


def test_five_households_within_seven_days() -> None:
    draft = one(regional_disaster(VILLAGE, records(3, 0, 1, 2, 4), [], CFG))
    assert draft.period == P0
    assert (draft.window_start, draft.window_end) == (D0, D0 + dt.timedelta(days=4))
    assert draft.household_ids == ("H0", "H1", "H2", "H3", "H4")
    assert draft.event_ids == ("dis-H0-3", "dis-H1-0", "dis-H2-1", "dis-H3-2", "dis-H4-4")
    assert draft.severity is Severity.HIGH
    assert draft.reason == (f"区域性灾害风险: 村(社区){VILLAGE}在2024-06-20至2024-06-24期间有5户监测家庭报告灾害损失"
                            "(阈值5户/7天), 防止规模性返贫")


def test_spread_over_eight_days_raises_nothing() -> None:
    assert regional_disaster(VILLAGE, records(0, 2, 4, 6, 8), [], CFG) == []


def test_exactly_seven_days_apart_counts() -> None:
    draft = one(regional_disaster(VILLAGE, records(0, 2, 4, 6, 7), [], CFG))
    assert draft.window_end - draft.window_start == dt.timedelta(days=7)
    assert (draft.window_start, draft.period) == (D0, P0)


def test_same_household_twice_counts_once() -> None:
    twice = records(0, 1, 2, 3, 4, households=["H0", "H1", "H2", "H3", "H0"])
    assert regional_disaster(VILLAGE, twice, [], CFG) == []
    fifth = twice + records(5, households=["H9"])
    draft = one(regional_disaster(VILLAGE, fifth, [], CFG))
    assert draft.household_ids == ("H0", "H1", "H2", "H3", "H9")
    assert len(draft.event_ids) == 6  # both of H0's reports are evidence


def test_one_alert_per_period_even_when_several_windows_start_in_it() -> None:
    # six households on days 0-2: windows starting on day 0 and on day 1 both qualify, both in period P0
    cluster = records(0, 0, 1, 1, 2, 2)
    draft = one(regional_disaster(VILLAGE, cluster, [], CFG))
    assert (draft.period, draft.window_start, draft.window_end) == (P0, D0, D0 + dt.timedelta(days=2))
    assert len(draft.household_ids) == 6
    # once the period has alerted, more households in it raise nothing
    assert regional_disaster(VILLAGE, cluster + records(3, households=["H6"]), [P0], CFG) == []


def test_a_cluster_whose_windows_start_in_two_periods_gives_two_alerts() -> None:
    # days 6..11 (2024-06-26 .. 2024-07-01): the window from day 6 (last day of P0) holds six households, the one
    # from day 7 (first day of P0 + 1) still holds five
    cluster = records(6, 7, 8, 9, 10, 11)
    first, second = regional_disaster(VILLAGE, cluster, [], CFG)
    assert (first.period, first.window_start, first.window_end) == (P0, D0 + dt.timedelta(days=6),
                                                                    D0 + dt.timedelta(days=11))
    assert first.household_ids == ("H0", "H1", "H2", "H3", "H4", "H5")
    assert (second.period, second.window_start, second.window_end) == (P0 + 1, D0 + dt.timedelta(days=7),
                                                                       D0 + dt.timedelta(days=11))
    assert second.household_ids == ("H1", "H2", "H3", "H4", "H5")
    assert first.alert_id != second.alert_id
    # each period separately: what has fired is skipped, the other period still alerts
    assert [d.period for d in regional_disaster(VILLAGE, cluster, [P0], CFG)] == [P0 + 1]
    assert [d.period for d in regional_disaster(VILLAGE, cluster, [P0 + 1], CFG)] == [P0]
    assert regional_disaster(VILLAGE, cluster, [P0, P0 + 1], CFG) == []
    # five households only: only the window from day 6 qualifies
    assert [d.period for d in regional_disaster(VILLAGE, records(6, 7, 8, 9, 10), [], CFG)] == [P0]


def test_a_later_cluster_alerts_again_with_its_own_id() -> None:
    first = records(0, 1, 2, 3, 4)
    draft = one(regional_disaster(VILLAGE, first, [], CFG))
    later = first + records(20, 21, 22, 23, 24, households=["J0", "J1", "J2", "J3", "J4"])
    again = one(regional_disaster(VILLAGE, later, [draft.period], CFG))
    assert again.window_start == D0 + dt.timedelta(days=20)
    assert again.period == regional_period(D0 + dt.timedelta(days=20), CFG) == P0 + 2
    assert again.household_ids == ("J0", "J1", "J2", "J3", "J4")
    assert again.alert_id != draft.alert_id
    # without the first period fired, both periods alert, in date order
    assert [d.period for d in regional_disaster(VILLAGE, later, [], CFG)] == [P0, P0 + 2]


def test_fired_periods_elsewhere_do_not_silence_a_period() -> None:
    assert [d.period for d in regional_disaster(VILLAGE, records(0, 1, 2, 3, 4), {P0 - 1, P0 + 1}, CFG)] == [P0]


def test_regional_alert_id_is_village_and_period() -> None:
    a = one(regional_disaster(VILLAGE, records(0, 1, 2, 3, 4), [], CFG))
    b = one(regional_disaster(VILLAGE, list(reversed(records(0, 1, 2, 3, 4, 5))), [], CFG))
    shifted = one(regional_disaster(VILLAGE, records(2, 3, 4, 5, 6), [], CFG))  # other window, same period
    c = one(regional_disaster("652701100202", records(0, 1, 2, 3, 4), [], CFG))
    d = one(regional_disaster(VILLAGE, records(7, 8, 9, 10, 11), [], CFG))  # next period
    assert shifted.window_start != a.window_start and shifted.period == a.period
    assert a.alert_id == b.alert_id == shifted.alert_id
    assert len({a.alert_id, c.alert_id, d.alert_id}) == 3
    assert len(a.alert_id) == 32 and int(a.alert_id, 16) >= 0


def test_regional_thresholds_are_configurable() -> None:
    assert regional_disaster(VILLAGE, records(0, 1, 2), [], CFG) == []
    three = one(regional_disaster(VILLAGE, records(0, 1, 2), [], RuleConfig(regional_min_households=3)))
    assert "阈值3户/7天" in three.reason
    nine = RuleConfig(regional_window_days=8)
    wide = one(regional_disaster(VILLAGE, records(0, 2, 4, 6, 8), [], nine))
    assert (wide.window_start, wide.window_end, wide.period) == (D0, D0 + dt.timedelta(days=8),
                                                                 D0.toordinal() // 9)
    assert regional_disaster(VILLAGE, records(0, 2, 4, 6, 9), [], nine) == []


def test_horizon_must_cover_the_windows() -> None:
    assert RuleConfig(history_horizon_days=365).history_horizon_days == 365
    with pytest.raises(ValueError, match=r"history_horizon_days \(364\) must cover medical_window_days"):
        RuleConfig(history_horizon_days=364)
    with pytest.raises(ValueError, match="must cover regional_window_days"):
        RuleConfig(medical_window_days=30, regional_window_days=40, history_horizon_days=39)
    with pytest.raises(ValueError, match="must cover job_gap_days"):
        RuleConfig(medical_window_days=30, job_gap_days=90, history_horizon_days=60)


# --- the monitor's stage functions and the alert records -------------------------------------------------------


def test_person_context_from_a_registry_record() -> None:
    rec = {"person_key": "k" * 64, "household_id": HH, "relation": "户主", "sex": "M",
           "birth_date": dt.date(1968, 3, 5), "village_code": VILLAGE}
    assert PersonContext.from_record(rec) == PersonContext("k" * 64, HH, dt.date(1968, 3, 5), "户主", VILLAGE)


def stage(feed: catalog.Feed, event: dict[str, Any], who: PersonContext | None,
          stays: list[MedicalStay] | None = None, facts: list[Fact] | None = None) -> Any:
    return household_stage(feed, feed.topic, event, who, HOUSEHOLD, facts or [], stays or [], TODAY, CFG)


def test_household_stage_for_a_disaster_emits_a_village_record() -> None:
    outcome = stage(catalog.DISASTER_LOSS, disaster(damage="COLLAPSED"), person())
    assert [d.severity for d in outcome.verdict.drafts] == [Severity.HIGH]
    assert outcome.verdict.stays is None
    draft = outcome.verdict.drafts[0]
    # the disaster counted by REGIONAL_DISASTER, and the HIGH alert by REGIONAL_RISK_CLUSTER, both in the village
    assert outcome.village_records == [
        VillageRecord(HH, "dis-1", dt.date(2024, 6, 20)),
        VillageRecord(HH, draft.alert_id, dt.date(2024, 6, 20), Rule.REGIONAL_RISK_CLUSTER.value)]
    assert outcome.regions == [VILLAGE, VILLAGE]


def test_household_stage_for_a_hospitalisation_returns_the_new_stays() -> None:
    earlier = [stay(10, "7000", "hosp-0")]
    outcome = stage(catalog.HOSPITALIZATION, hospital("7000"), person(), earlier)
    assert [(d.severity, d.event_ids) for d in outcome.verdict.drafts] == [(Severity.HIGH, ("hosp-0", "hosp-1"))]
    assert outcome.verdict.stays == [stay(10, "7000", "hosp-0"),
                                     MedicalStay("hosp-1", ADMITTED, Decimal("7000"), high=True)]
    # the stay counted by REGIONAL_ILLNESS (by disease), the HIGH alert by REGIONAL_RISK_CLUSTER
    assert [(r.rule, r.group) for r in outcome.village_records] == [(Rule.REGIONAL_ILLNESS, "脑梗死"),
                                                                   (Rule.REGIONAL_RISK_CLUSTER, "")]
    assert earlier == [stay(10, "7000", "hosp-0")]  # the given history is not modified


def test_household_stage_for_other_events_keeps_the_stays() -> None:
    outcome = stage(catalog.DROPOUT, dropout("JUNIOR"), person(), [stay(10, "7000", "hosp-0")])
    assert [d.rule for d in outcome.verdict.drafts] == [Rule.SCHOOL_DROPOUT]
    assert outcome.verdict.stays is None
    assert [r.rule for r in outcome.village_records] == [Rule.REGIONAL_RISK_CLUSTER]  # a HIGH alert
    assert outcome.fact == Fact(catalog.DROPOUT.topic, "drop-1", None, dt.date(2024, 3, 11), {
        "stage": "JUNIOR", "grade": "八年级", "school": "博乐市第三中学", "dropout_date": "2024-03-11"})


def test_a_feed_without_rules_is_kept_as_a_fact_and_raises_nothing() -> None:
    feed = catalog.Feed("hrss", "employment", "povwatch.events.Employment", "events.hrss.employment")
    event = {"event_id": "job-1", "person_key": "k" * 64, "occurred_at": dt.date(2024, 3, 1),
             "start_date": dt.date(2024, 3, 1), "wage": Decimal("3200.00"), "end_date": None,
             "channel": "ORGANISED", "kinds": ["A", "B"]}
    outcome = stage(feed, event, None, [stay(10, "7000", "hosp-0")])
    assert outcome.verdict.drafts == [] and outcome.verdict.stays is None and outcome.village_records == []
    assert outcome.fact == Fact(feed.topic, "job-1", "k" * 64, dt.date(2024, 3, 1), {
        "start_date": "2024-03-01", "wage": "3200.00", "channel": "ORGANISED", "kinds": "A、B"})


def test_hospitalisation_keeps_its_stays_not_a_fact() -> None:
    outcome = stage(catalog.HOSPITALIZATION, hospital("100"), person())
    assert outcome.fact is None and outcome.verdict.stays is not None


def test_a_person_rule_for_an_event_that_names_no_person_raises_nothing() -> None:
    # only an intake report may name the household alone; a person's rule then has no one to judge
    assert stage(catalog.DROPOUT, dropout("JUNIOR"), None).verdict.drafts == []


def test_alert_records_fit_the_avro_schemas() -> None:
    codec = default_codec()
    raised = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
    draft = only(medical(hospital("12000"))[0])
    rec = household_alert_record(draft, raised)
    back = codec.decode(codec.encode("povwatch.alerts.HouseholdAlert", rec)).record
    assert back == {**rec, "event_ids": ["hosp-1"]}
    assert back["alert_id"] == draft.alert_id and back["rule"] == "MEDICAL_EXPENSE"
    regional = one(regional_disaster(VILLAGE, records(0, 1, 2, 3, 4), [], CFG))
    rec = regional_alert_record(regional, raised)
    back = codec.decode(codec.encode("povwatch.alerts.RegionalAlert", rec)).record
    assert back == rec
    assert back["alert_id"] == regional.alert_id and back["region_code"] == VILLAGE
    assert back["window_start"] == back["occurred_at"] == D0 and back["window_end"] == D0 + dt.timedelta(days=4)
    assert back["household_ids"] == list(regional.household_ids)


def test_arrival_order_does_not_change_the_alerts_when_the_late_stay_is_itself_high() -> None:
    big = hospital("12000", ADMITTED - dt.timedelta(days=60), "hosp-a")  # HIGH on its own
    small = hospital("7000", ADMITTED, "hosp-b")  # HIGH together with the first (19000)

    def alerts(first: dict[str, Any], second: dict[str, Any]) -> set[tuple[dt.date, tuple[str, ...]]]:
        drafts, history = medical(first)
        more, _ = medical(second, history)
        return {(d.occurred_at, tuple(sorted(d.event_ids))) for d in drafts + more}

    in_order = alerts(big, small)
    assert in_order == {(big["admission_date"], ("hosp-a",)), (ADMITTED, ("hosp-a", "hosp-b"))}
    assert alerts(small, big) == in_order


def test_a_zero_deposit_is_no_asset_even_without_income() -> None:
    def deposit(balance: str) -> dict[str, Any]:
        return {"event_id": "dep-1", "deposit_balance": Decimal(balance), "loan_balance": Decimal(0),
                "loan_type": "OTHER", "loan_issue_date": None, "loan_due_date": None, "interest_subsidy": None,
                "comparison_date": dt.date(2026, 6, 30), "occurred_at": dt.date(2026, 6, 30)}

    broke = household(income="0")
    ctx = _ctx(catalog.event_feed("pboc", "deposit-loan").topic, person(), broke, CFG)
    assert household_rules.asset_purchase(deposit("0"), ctx).drafts == []
    [draft] = household_rules.asset_purchase(deposit("0.01"), ctx).drafts
    assert (draft.rule, draft.severity) == (Rule.ASSET_PURCHASE, Severity.LOW)
