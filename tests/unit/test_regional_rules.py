"""The regional rules of the risk model (docs/rules.md), over plain records and rows, and through the village stage.

    windowed counts  REGIONAL_RETURNS (persons of a township), REGIONAL_ILLNESS (households, per disease),
                     REGIONAL_RISK_CLUSTER (households with HIGH alerts), REGIONAL_DISASTER (disaster-loss and
                     farm-disaster household rows together)
    village rows     a village-level farm-disaster row, drinking water naming no household (with its timer),
                     collective income

Alert ids are a function of the records, never of their arrival order (hypothesis, through `VillageStage`), and the
village state (timers, fired keys) survives the changelog and a restart.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import catalog
from services.monitor.engine import TrackedDict
from services.monitor.handlers import Emit, HouseholdStage, VillageStage
from services.monitor.regional_rules import fire_village, reach, township_of, village_row, windowed
from services.monitor.rules import (
    HouseholdContext,
    PersonContext,
    RegionalDraft,
    Rule,
    RuleConfig,
    Severity,
    Timer,
    VillageRecord,
    as_fact,
    regional_period,
)
from services.monitor.stages import regional_records
from services.monitor.state import VILLAGE_STATE, VillageState
from tests.unit.test_monitor_handlers import ROUTES, regional_alerts, village_batch, village_sweep
from tests.unit.test_risk_model import (
    CHRONIC,
    CODEC,
    DISASTER,
    EMPLOYMENT,
    FARM,
    HOUSE,
    INGESTED,
    REGISTRATION,
    UTC,
    WATER,
    D,
    chronic,
    deliver,
    disaster,
    employment,
    farm,
    house,
    message,
    registration,
    registry_household,
    stage_of,
    water,
)

CFG = RuleConfig()
VILLAGE = "652701100201"
VILLAGE2 = "652701100202"  # same township
ELSEWHERE = "652701101301"  # another township of the county
TOWNSHIP = "652701100"
NOW = dt.datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
R0 = dt.date(2026, 1, 5)  # the first record's day
COLLECTIVE = catalog.event_feed("agriculture", "collective-income").topic
OPINION = catalog.event_feed("cac", "public-opinion").topic
HOSPITALIZATION = catalog.HOSPITALIZATION.topic

RETURNS, ILLNESS, CLUSTER = Rule.REGIONAL_RETURNS, Rule.REGIONAL_ILLNESS, Rule.REGIONAL_RISK_CLUSTER
WINDOW = {RETURNS: 30, ILLNESS: 14, CLUSTER: 30, Rule.REGIONAL_DISASTER: 7}
MINIMUM = {RETURNS: 10, ILLNESS: 5, CLUSTER: 5, Rule.REGIONAL_DISASTER: 5}


def day(n: int) -> dt.date:
    return R0 + dt.timedelta(days=n)


def record(rule: Rule, household: str, event_id: str, on: dt.date, person: str | None = None,
           group: str = "") -> VillageRecord:
    return VillageRecord(household, event_id, on, rule.value, person, group)


def returned(*days: int, persons: Sequence[str] | None = None, households: Sequence[str] | None = None
             ) -> list[VillageRecord]:
    """Employment ends: person i of household i // 2 on day `days[i]`."""
    who = persons or [f"P{i}" for i in range(len(days))]
    homes = households or [f"H{i // 2}" for i in range(len(days))]
    return [record(RETURNS, hh, f"job-{p}-{n}", day(n), p) for p, hh, n in zip(who, homes, days)]


def stays(disease: str, *days: int, households: Sequence[str] | None = None) -> list[VillageRecord]:
    homes = households or [f"H{i}" for i in range(len(days))]
    return [record(ILLNESS, hh, f"hosp-{hh}-{disease}-{n}", day(n), group=disease) for hh, n in zip(homes, days)]


def highs(*days: int, households: Sequence[str] | None = None) -> list[VillageRecord]:
    homes = households or [f"H{i}" for i in range(len(days))]
    return [record(CLUSTER, hh, f"alert-{hh}-{n}", day(n)) for hh, n in zip(homes, days)]


def first_of_period(on: dt.date, days: int) -> dt.date:
    return dt.date.fromordinal(max(1, on.toordinal() // (days + 1) * (days + 1)))


def regional_id(rule: Rule, region: str, start: dt.date, group: str = "") -> str:
    """One alert per rule, region, group and fixed period (window + 1 days from 0001-01-01) holding the start."""
    return RegionalDraft(region, 0, start, start, (), (), "", Severity.LOW, rule,
                         f"{rule.value}|{group}|{first_of_period(start, WINDOW[rule]).isoformat()}").alert_id


def count(region: str, recs: Sequence[VillageRecord]) -> list[RegionalDraft]:
    """What `windowed` raises for these records arriving one by one, as the village stage calls it: each alert as
    last emitted (an alert is emitted again, under its id, when its evidence grows), in order of first emission."""
    fired: set[int] = set()
    fired_keys: set[str] = set()
    kept: list[VillageRecord] = []
    last: dict[str, RegionalDraft] = {}
    for rec in recs:
        kept.append(rec)
        for draft in windowed(region, kept, rec, fired, fired_keys, CFG):
            if draft.fact is None:
                fired.add(draft.period)
            else:
                fired_keys.add(draft.fact)
            last[draft.alert_id] = draft
    return list(last.values())


def the(drafts: list[RegionalDraft]) -> RegionalDraft:
    assert len(drafts) == 1, drafts
    return drafts[0]


# --- REGIONAL_RETURNS ------------------------------------------------------------------------------------------------


def test_ten_persons_of_a_township_back_within_30_days_are_medium() -> None:
    recs = returned(0, 2, 4, 6, 8, 10, 12, 14, 16, 30)
    draft = the(count(TOWNSHIP, recs))
    assert (draft.rule, draft.severity, draft.village_code) == (RETURNS, Severity.MEDIUM, TOWNSHIP)
    assert len(draft.village_code) == 9
    assert (draft.window_start, draft.window_end) == (day(0), day(30))
    assert draft.household_ids == ("H0", "H1", "H2", "H3", "H4")  # the households of the persons counted
    assert draft.event_ids == tuple(sorted(r.event_id for r in recs))
    assert draft.reason == ("区域性务工返乡风险: 乡镇652701100在2026-01-05至2026-02-04期间有10人结束务工"
                            "(涉及5户; 阈值10人/30天), 关注规模性失业返贫")
    assert draft.alert_id == regional_id(RETURNS, TOWNSHIP, day(0))


def test_nine_persons_or_ten_over_31_days_raise_nothing() -> None:
    assert count(TOWNSHIP, returned(0, 1, 2, 3, 4, 5, 6, 7, 8)) == []
    assert count(TOWNSHIP, returned(0, 2, 4, 6, 8, 10, 12, 14, 16, 31)) == []


def test_the_same_person_back_twice_counts_once() -> None:
    persons = ["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P0"]
    twice = returned(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, persons=persons)
    assert count(TOWNSHIP, twice) == []
    draft = the(count(TOWNSHIP, twice + returned(10, persons=["P9"], households=["H9"])))
    assert "有10人结束务工" in draft.reason and len(draft.event_ids) == 11


def test_returns_are_counted_by_township_across_its_villages() -> None:
    feed = catalog.event_feed("hrss", "employment")
    regions = set()
    for village in (VILLAGE, VILLAGE2, ELSEWHERE):
        hh = HouseholdContext(f"HH-{village}", village, "MONITORING", Decimal("6000"), 4)
        records, where = regional_records(feed, employment("job-1", dt.date(2025, 3, 1), R0), hh, [])
        assert [r.rule for r in records] == [RETURNS.value] and records[0].person_key == "a1" * 32
        regions.update(where)
    assert regions == {TOWNSHIP, township_of(ELSEWHERE)} and township_of(ELSEWHERE) == "652701101"
    # a job that has not ended is no return
    hh = HouseholdContext("HH", VILLAGE, "MONITORING", Decimal("6000"), 4)
    assert regional_records(feed, employment("job-2", R0), hh, []) == ([], [])


def test_returns_from_two_villages_raise_one_township_alert_through_the_stages() -> None:
    persons = [(f"{i:02d}" * 32, f"BL-{i:04d}", VILLAGE if i % 2 else VILLAGE2) for i in range(10)]
    households = HouseholdStage({}, TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG,
                                grace=dt.timedelta(days=3))
    for _, hh, village in persons:
        households.registry(hh, registry_household(hh, village=village), NOW)
    villages = VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)
    alerts = []
    for i, (key, hh, village) in enumerate(persons):
        who = PersonContext(key, hh, dt.date(1990, 1, 1), "户主", village)
        out = deliver(households, EMPLOYMENT, employment(f"job-{i}", dt.date(2025, 3, 1), day(2 * i), key=key),
                      NOW, who=who, household_id=hh)
        for emit in out:
            if emit.topic == ROUTES.village_disasters:
                alerts += regional_alerts(village_batch(villages, emit.value or b"", NOW))
    (alert,) = alerts
    assert (alert["rule"], alert["severity"], alert["region_code"]) == ("REGIONAL_RETURNS", "MEDIUM", TOWNSHIP)
    assert alert["household_ids"] == sorted(hh for _, hh, _ in persons)
    assert alert["alert_id"] == regional_id(RETURNS, TOWNSHIP, day(0))
    assert set(villages.state) == {TOWNSHIP}


# --- REGIONAL_ILLNESS ------------------------------------------------------------------------------------------------


def test_five_households_in_hospital_with_one_disease_within_14_days_are_medium() -> None:
    recs = stays("布鲁氏菌病", 0, 3, 7, 10, 14)
    draft = the(count(VILLAGE, recs))
    assert (draft.rule, draft.severity, draft.village_code) == (ILLNESS, Severity.MEDIUM, VILLAGE)
    assert draft.household_ids == ("H0", "H1", "H2", "H3", "H4")
    assert draft.event_ids == tuple(sorted(r.event_id for r in recs))
    assert draft.reason == ("区域性疾病风险: 村(社区)652701100201在2026-01-05至2026-01-19期间有5户因布鲁氏菌病住院"
                            "(阈值5户/14天)")
    assert draft.alert_id == regional_id(ILLNESS, VILLAGE, day(0), "布鲁氏菌病")


def test_no_illness_alert_for_four_households_15_days_or_different_diseases() -> None:
    assert count(VILLAGE, stays("布鲁氏菌病", 0, 1, 2, 3)) == []
    assert count(VILLAGE, stays("布鲁氏菌病", 0, 3, 7, 10, 15)) == []
    mixed = stays("布鲁氏菌病", 0, 1, 2, households=["H0", "H1", "H2"]) + stays("肺炎", 1, 2,
                                                                             households=["H3", "H4"])
    assert count(VILLAGE, mixed) == []
    again = stays("布鲁氏菌病", 0, 1, 2, 3, 4, households=["H0", "H1", "H2", "H3", "H0"])
    assert count(VILLAGE, again) == []


def test_two_diseases_each_over_the_threshold_are_two_alerts() -> None:
    recs = stays("布鲁氏菌病", 0, 1, 2, 3, 4) + stays("肺炎", 0, 1, 2, 3, 4)
    drafts = count(VILLAGE, recs)
    assert ["因布鲁氏菌病住院" in d.reason for d in drafts] == [True, False]
    assert ["因肺炎住院" in d.reason for d in drafts] == [False, True]
    assert [d.alert_id for d in drafts] == [regional_id(ILLNESS, VILLAGE, day(0), "布鲁氏菌病"),
                                            regional_id(ILLNESS, VILLAGE, day(0), "肺炎")]


def test_a_stay_is_counted_by_its_village_and_disease() -> None:
    hh = HouseholdContext("HH", VILLAGE, "MONITORING", Decimal("6000"), 4)
    stay = {"event_id": "hosp-1", "admission_date": R0, "disease": "布鲁氏菌病", "occurred_at": R0}
    assert regional_records(catalog.HOSPITALIZATION, stay, hh, []) == (
        [VillageRecord("HH", "hosp-1", R0, ILLNESS.value, None, "布鲁氏菌病")], [VILLAGE])


# --- REGIONAL_RISK_CLUSTER -------------------------------------------------------------------------------------------


def test_five_households_with_high_alerts_within_30_days_are_high() -> None:
    recs = highs(0, 10, 20, 25, 30)
    draft = the(count(VILLAGE, recs))
    assert (draft.rule, draft.severity, draft.village_code) == (CLUSTER, Severity.HIGH, VILLAGE)
    assert draft.household_ids == ("H0", "H1", "H2", "H3", "H4")
    assert draft.reason == ("区域性返贫风险聚集: 村(社区)652701100201在2026-01-05至2026-02-04期间有5户出现高风险预警"
                            "(阈值5户/30天), 防止规模性返贫")
    assert draft.alert_id == regional_id(CLUSTER, VILLAGE, day(0))
    assert count(VILLAGE, highs(0, 10, 20, 25, 31)) == []
    assert count(VILLAGE, highs(0, 1, 2, 3)) == []
    two = highs(0, 1, 2, 3, 4, households=["H0", "H1", "H2", "H3", "H0"])
    assert count(VILLAGE, two) == []


def households_and_village() -> tuple[HouseholdStage, VillageStage]:
    households = stage_of(*(registry_household(f"BL-{i:04d}") for i in range(6)))
    return households, VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)


def through(households: HouseholdStage, villages: VillageStage, topic: str, event: dict[str, Any],
            household_id: str) -> list[dict[str, Any]]:
    """One event through the household stage, and its village records through the village stage."""
    who = PersonContext("a1" * 32, household_id, dt.date(1980, 1, 1), "户主", VILLAGE)
    alerts = []
    for emit in deliver(households, topic, event, NOW, who=who, household_id=household_id):
        if emit.topic == ROUTES.village_disasters:
            alerts += regional_alerts(village_batch(villages, emit.value or b"", NOW))
    return alerts


def test_medium_alerts_do_not_count_and_a_household_counts_once_through_the_stages() -> None:
    households, villages = households_and_village()
    for i in range(3):  # three households with a HIGH alert (house grade D)
        assert through(households, villages, HOUSE, house(f"hs-{i}", grade="D"), f"BL-{i:04d}") == []
    # the fourth household: two HIGH alerts, counted once
    assert through(households, villages, HOUSE, house("hs-3a", grade="D"), "BL-0003") == []
    assert through(households, villages, HOUSE, house("hs-3b", damage="COLLAPSED"), "BL-0003") == []
    # the fifth: a MEDIUM alert only (grade C) does not count
    assert through(households, villages, HOUSE, house("hs-4a", grade="C"), "BL-0004") == []
    assert len(villages.state[VILLAGE].records) == 5
    # its HIGH alert does
    (alert,) = through(households, villages, HOUSE, house("hs-4b", grade="D", day=D + dt.timedelta(days=3)),
                       "BL-0004")
    assert (alert["rule"], alert["severity"], alert["region_code"]) == ("REGIONAL_RISK_CLUSTER", "HIGH", VILLAGE)
    assert alert["household_ids"] == [f"BL-{i:04d}" for i in range(5)]
    assert len(alert["event_ids"]) == 6  # the HIGH alerts' ids
    assert alert["alert_id"] == regional_id(CLUSTER, VILLAGE, D)
    # a sixth household in the same period: no second alert, the same one again with the household added
    (grown,) = through(households, villages, HOUSE, house("hs-5", grade="D"), "BL-0005")
    assert grown["alert_id"] == alert["alert_id"]
    assert grown["household_ids"] == [f"BL-{i:04d}" for i in range(6)] and len(grown["event_ids"]) == 7


# --- REGIONAL_DISASTER -----------------------------------------------------------------------------------------------


def test_disaster_loss_and_farm_disaster_rows_are_counted_together_a_household_once() -> None:
    households, villages = households_and_village()
    # MEDIUM household alerts only (no HIGH records for the cluster): minor damage, small farm losses
    steps = [(DISASTER, disaster("dis-0", "MINOR", D), "BL-0000"), (FARM, farm("farm-0", day=D), "BL-0000"),
             (FARM, farm("farm-1", day=D + dt.timedelta(days=1)), "BL-0001"),
             (DISASTER, disaster("dis-2", "MINOR", D + dt.timedelta(days=2)), "BL-0002"),
             (FARM, farm("farm-3", day=D + dt.timedelta(days=7)), "BL-0003")]
    for topic, event, hh in steps:
        assert through(households, villages, topic, event, hh) == []
    assert len(villages.state[VILLAGE].records) == 5  # four households
    (alert,) = through(households, villages, FARM, farm("farm-4", day=D + dt.timedelta(days=5)), "BL-0004")
    assert (alert["rule"], alert["severity"], alert["region_code"]) == ("REGIONAL_DISASTER", "HIGH", VILLAGE)
    assert alert["household_ids"] == [f"BL-{i:04d}" for i in range(5)]
    assert alert["event_ids"] == ["dis-0", "dis-2", "farm-0", "farm-1", "farm-3", "farm-4"]
    assert (alert["window_start"], alert["window_end"]) == (D, D + dt.timedelta(days=7))
    assert alert["alert_id"] == RegionalDraft(VILLAGE, regional_period(D, CFG), D, D, (), (), "").alert_id
    assert "有5户监测家庭报告灾害损失(阈值5户/7天)" in alert["reason"]


@pytest.mark.parametrize("lost, livestock, alert", [
    ("100", 0, True), ("99.99", 49, False), ("0", 50, True), ("99.99", 50, True), ("100", 49, True),
    ("320", 80, True), ("0", 0, False),
])
def test_a_village_level_farm_row_on_its_own(lost: str, livestock: int, alert: bool) -> None:
    row = farm("farm-9", lost=lost, livestock=livestock, key=None)
    verdict = village_row(catalog.event_feed("agriculture", "farm-disaster").rules, VILLAGE, row, [], D, CFG)
    assert verdict.timers == [] and verdict.cancel == []
    if not alert:
        assert verdict.drafts == []
        return
    draft = the(verdict.drafts)
    assert (draft.rule, draft.severity, draft.village_code) == (Rule.REGIONAL_DISASTER, Severity.HIGH, VILLAGE)
    assert (draft.window_start, draft.window_end, draft.household_ids, draft.event_ids) == (D, D, (), ("farm-9",))
    assert draft.reason == (f"区域性灾害风险: 村(社区){VILLAGE}农业灾情(2026-02-11, 棉花): 绝收{Decimal(lost)}亩, "
                            f"死亡牲畜{livestock}头只, 直接经济损失8000元(阈值: 绝收100亩或死亡牲畜50头只)")
    # its own alert: not the village's windowed count for the period
    assert draft.alert_id != RegionalDraft(VILLAGE, regional_period(D, CFG), D, D, (), (), "").alert_id
    other = the(village_row((Rule.DISASTER_LOSS, Rule.REGIONAL_DISASTER), VILLAGE,
                            {**row, "event_id": "farm-10"}, [], D, CFG).drafts)
    assert other.alert_id != draft.alert_id


def village_event(topic: str, event: Mapping[str, Any], village: str = VILLAGE) -> bytes:
    return CODEC.encode("povwatch.monitor.VillageEvent", {"topic": topic, "event": message(topic, event),
                                                          "village_code": village})


def test_a_village_level_farm_row_through_the_village_stage() -> None:
    stage = VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)
    event = farm("farm-9", lost="320", key=None)
    (alert,) = regional_alerts(village_batch(stage, village_event(FARM, event), NOW))
    assert (alert["rule"], alert["severity"], alert["region_code"], alert["event_ids"]) == (
        "REGIONAL_DISASTER", "HIGH", VILLAGE, ["farm-9"])
    assert alert["household_ids"] == [] and stage.state[VILLAGE].records == []  # no household to count
    assert village_batch(stage, village_event(FARM, event), NOW) == []  # redelivered
    small = farm("farm-10", lost="10", key=None)
    assert village_batch(stage, village_event(FARM, small), NOW) == []


def test_rows_naming_no_household_raise_no_household_rule() -> None:
    opinion_rules = catalog.event_feed("cac", "public-opinion").rules
    clue = {"event_id": "yq-1", "person_key": None, "occurred_at": D, "ingested_at": INGESTED, "clue_id": "YQ-1",
            "found_date": D, "platform": "WEIBO", "village_code": VILLAGE, "risk_type": "DISASTER",
            "summary": "某村受灾"}
    verdict = village_row(opinion_rules, VILLAGE, clue, [], D, CFG)
    assert (verdict.drafts, verdict.timers, verdict.cancel) == ([], [], [])
    stage = VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)
    assert village_batch(stage, village_event(OPINION, clue), NOW) == []
    assert [f.event_id for f in stage.state[VILLAGE].facts] == ["yq-1"]  # kept as the village's fact


# --- REGIONAL_WATER --------------------------------------------------------------------------------------------------

FOUND = dt.date(2026, 1, 31)
DUE = FOUND + dt.timedelta(days=30)  # 2026-03-02
WATER_RULES = catalog.event_feed("water", "drinking-water").rules


def village_water(event_id: str = "vw-1", resolved: dt.date | None = None) -> dict[str, Any]:
    return water(event_id, found=FOUND, resolved=resolved, key=None, indicators=("QUANTITY", "SUPPLY_RATE"))


def water_id() -> str:
    return RegionalDraft(VILLAGE, 0, FOUND, FOUND, (), (), "", Severity.LOW, Rule.REGIONAL_WATER,
                         "2026-01-31").alert_id


def test_unsolved_village_water_is_medium_and_waits_30_days() -> None:
    verdict = village_row(WATER_RULES, VILLAGE, village_water(), [], DUE - dt.timedelta(days=1), CFG)
    draft = the(verdict.drafts)
    assert (draft.rule, draft.severity, draft.village_code, draft.event_ids) == (
        Rule.REGIONAL_WATER, Severity.MEDIUM, VILLAGE, ("vw-1",))
    assert (draft.window_start, draft.window_end, draft.household_ids) == (FOUND, FOUND, ())
    assert draft.reason == "村(社区)652701100201饮水安全问题(水量、供水保证率), 发现日期2026-01-31, 尚未解决"
    assert draft.alert_id == water_id()
    assert verdict.timers == [Timer(Rule.REGIONAL_WATER.value, "2026-01-31", DUE, FOUND, "vw-1", None)]
    assert verdict.cancel == []


@pytest.mark.parametrize("late", [0, 1, 60])
def test_village_water_unsolved_30_days_on_arrival_is_high(late: int) -> None:
    verdict = village_row(WATER_RULES, VILLAGE, village_water(), [], DUE + dt.timedelta(days=late), CFG)
    draft = the(verdict.drafts)
    assert (draft.severity, draft.alert_id) == (Severity.HIGH, water_id())
    assert draft.reason.endswith("发现日期2026-01-31, 尚未解决, 已超过30天")
    assert verdict.timers == []


def test_village_water_resolution_cancels_and_a_resolution_first_means_nothing() -> None:
    fixed = village_water("vw-2", resolved=dt.date(2026, 2, 10))
    verdict = village_row(WATER_RULES, VILLAGE, fixed, [as_fact(WATER, village_water())], FOUND, CFG)
    assert verdict.drafts == [] and verdict.timers == []
    assert verdict.cancel == [(Rule.REGIONAL_WATER.value, "2026-01-31")]
    for today in (FOUND, DUE + dt.timedelta(days=5)):
        verdict = village_row(WATER_RULES, VILLAGE, village_water(), [as_fact(WATER, fixed)], today, CFG)
        assert (verdict.drafts, verdict.timers, verdict.cancel) == ([], [], [])
    # a household's resolution is not the village's
    theirs = as_fact(WATER, water("w-9", found=FOUND, resolved=dt.date(2026, 2, 10)))
    assert len(village_row(WATER_RULES, VILLAGE, village_water(), [theirs], FOUND, CFG).drafts) == 1


def test_the_village_water_timer_fires_high_unless_resolved() -> None:
    timer = Timer(Rule.REGIONAL_WATER.value, "2026-01-31", DUE, FOUND, "vw-1", None)
    facts = [as_fact(WATER, village_water())]
    draft = the(fire_village(timer, VILLAGE, facts, CFG))
    assert (draft.rule, draft.severity, draft.event_ids, draft.alert_id) == (
        Rule.REGIONAL_WATER, Severity.HIGH, ("vw-1",), water_id())
    assert draft.reason == ("村(社区)652701100201饮水安全问题(水量、供水保证率), 发现日期2026-01-31, 尚未解决, "
                            "已超过30天")
    fixed = as_fact(WATER, village_water("vw-2", resolved=dt.date(2026, 2, 10)))
    assert fire_village(timer, VILLAGE, [*facts, fixed], CFG) == []


BEFORE_MIDNIGHT = dt.datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC)  # still 1 March in Shanghai
AFTER_MIDNIGHT = dt.datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # 2 March, 01:00 in Shanghai
ARRIVED = dt.datetime(2026, 2, 3, 4, 0, tzinfo=UTC)


def water_stage() -> tuple[VillageStage, list[dict[str, Any]]]:
    stage = VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)
    return stage, regional_alerts(village_batch(stage, village_event(WATER, village_water()),
                                              ARRIVED))


def test_the_village_water_timer_fires_through_the_sweep_on_the_prefectures_date_once() -> None:
    stage, (medium,) = water_stage()
    assert (medium["rule"], medium["severity"], medium["alert_id"]) == ("REGIONAL_WATER", "MEDIUM", water_id())
    assert [t.due for t in stage.state[VILLAGE].timers] == [DUE]
    assert village_sweep(stage, BEFORE_MIDNIGHT) == []
    (high,) = regional_alerts(village_sweep(stage, AFTER_MIDNIGHT))
    assert (high["rule"], high["severity"], high["alert_id"], high["region_code"]) == (
        "REGIONAL_WATER", "HIGH", water_id(), VILLAGE)
    assert high["event_ids"] == ["vw-1"] and high["raised_at"] == AFTER_MIDNIGHT
    assert stage.state[VILLAGE].timers == []
    assert village_sweep(stage, AFTER_MIDNIGHT) == []
    assert village_sweep(stage, AFTER_MIDNIGHT + dt.timedelta(days=40)) == []


def test_a_village_water_resolution_through_the_stage_cancels_the_timer() -> None:
    stage, _ = water_stage()
    fixed = village_event(WATER, village_water("vw-2", resolved=dt.date(2026, 2, 10)))
    assert village_batch(stage, fixed, ARRIVED) == []
    assert stage.state[VILLAGE].timers == [] and village_sweep(stage, AFTER_MIDNIGHT) == []
    first = VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)
    assert village_batch(first, fixed, ARRIVED) == []
    assert village_batch(first, village_event(WATER, village_water()), ARRIVED) == []
    assert first.state[VILLAGE].timers == [] and village_sweep(first, AFTER_MIDNIGHT) == []


# --- COLLECTIVE_INCOME_DROP -------------------------------------------------------------------------------------------


def collective(now: str, before: str, year: int = 2025, event_id: str = "col-1") -> dict[str, Any]:
    return {"event_id": event_id, "person_key": None, "occurred_at": dt.date(year, 1, 1), "ingested_at": INGESTED,
            "village_code": VILLAGE, "year": year, "operating_income": Decimal("500000"),
            "distributable_income": Decimal(now), "beneficiaries": 412,
            "previous_distributable_income": Decimal(before)}


COLLECTIVE_RULES = catalog.event_feed("agriculture", "collective-income").rules


@pytest.mark.parametrize("now, before, severity, reason", [
    ("246399.99", "352000", Severity.MEDIUM,
     "村集体可分配收益246399.99元(2025年), 上年352000元, 下降30%, 低于上年的70%"),
    ("200000", "352000", Severity.MEDIUM, "村集体可分配收益200000元(2025年), 上年352000元, 下降43%, 低于上年的70%"),
    ("0", "352000", Severity.HIGH, "村集体可分配收益0元(2025年), 上年352000元, 下降100%(降为零)"),
    ("246400", "352000", None, None),
    ("400000", "352000", None, None),
    ("0", "0", None, None),
    ("1000", "0", None, None),
])
def test_collective_income_drop(now: str, before: str, severity: Severity | None, reason: str | None) -> None:
    verdict = village_row(COLLECTIVE_RULES, VILLAGE, collective(now, before), [], dt.date(2026, 3, 10), CFG)
    assert verdict.timers == [] and verdict.cancel == []
    if severity is None:
        assert verdict.drafts == []
        return
    draft = the(verdict.drafts)
    assert (draft.rule, draft.severity, draft.village_code, draft.event_ids) == (
        Rule.COLLECTIVE_INCOME_DROP, severity, VILLAGE, ("col-1",))
    assert draft.reason == reason and draft.window_start == dt.date(2025, 1, 1)
    # one alert per village and 年度
    same = RegionalDraft(VILLAGE, 0, draft.window_start, draft.window_end, (), (), "", Severity.LOW,
                         Rule.COLLECTIVE_INCOME_DROP, "2025")
    assert draft.alert_id == same.alert_id
    next_year = the(village_row(COLLECTIVE_RULES, VILLAGE, collective(now, before, 2026, "col-2"), [],
                                dt.date(2026, 3, 10), CFG).drafts)
    assert next_year.alert_id != draft.alert_id


def test_collective_income_through_the_village_stage() -> None:
    stage = VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)
    (alert,) = regional_alerts(village_batch(stage, village_event(COLLECTIVE, collective("0", "352000")), NOW))
    assert (alert["rule"], alert["severity"], alert["region_code"], alert["event_ids"]) == (
        "COLLECTIVE_INCOME_DROP", "HIGH", VILLAGE, ["col-1"])


# --- alert ids are a function of the records, never of their arrival order ------------------------------------------


def village_record_msg(region: str, rec: VillageRecord) -> bytes:
    return CODEC.encode("povwatch.monitor.VillageDisaster", {
        "village_code": region, "household_id": rec.household_id, "event_id": rec.event_id,
        "disaster_date": rec.disaster_date, "rule": rec.rule, "person_key": rec.person_key, "group": rec.group})


def region_of(rec: VillageRecord) -> str:
    return TOWNSHIP if rec.rule == RETURNS else VILLAGE


def feed_records(recs: Iterable[VillageRecord]) -> dict[str, frozenset[str]]:
    """The records through a village stage in this order: each alert id and the households it names at its last
    emission. An alert is emitted again (under its id) only with more evidence."""
    stage = VillageStage(TrackedDict(), codec=CODEC, routes=ROUTES, rules=CFG)
    emitted: dict[str, list[tuple[frozenset[str], frozenset[str]]]] = {}
    for rec in recs:
        out: list[Emit] = village_batch(stage, village_record_msg(region_of(rec), rec), NOW)
        for a in regional_alerts(out):
            emitted.setdefault(a["alert_id"], []).append((frozenset(a["household_ids"]), frozenset(a["event_ids"])))
    for alert_id, evidence in emitted.items():
        for (h1, e1), (h2, e2) in zip(evidence, evidence[1:]):
            assert h1 <= h2 and e1 < e2, alert_id  # re-emitted: grown, nothing taken back
    return {alert_id: evidence[-1][0] for alert_id, evidence in emitted.items()}


def oracle(recs: Sequence[VillageRecord]) -> dict[str, frozenset[str]]:
    """The alerts docs/rules.md gives these records, written apart from the rules: for each rule, region and group,
    one alert per fixed period holding the start (a record's day) of a window with enough distinct members (persons
    for REGIONAL_RETURNS, else households), naming the households of every record of those windows."""
    found: dict[str, set[str]] = {}
    for rec in recs:
        rule = Rule(rec.rule)
        start, span = rec.disaster_date, dt.timedelta(days=WINDOW[rule])
        inside = [r for r in recs if r.rule == rec.rule and r.group == rec.group and region_of(r) == region_of(rec)
                  and start <= r.disaster_date <= start + span]
        members = {r.person_key if rule == RETURNS else r.household_id for r in inside}
        if len(members) < MINIMUM[rule]:
            continue
        if rule == Rule.REGIONAL_DISASTER:
            alert_id = RegionalDraft(VILLAGE, regional_period(start, CFG), start, start, (), (), "").alert_id
        else:
            alert_id = regional_id(rule, region_of(rec), start, rec.group)
        found.setdefault(alert_id, set()).update(r.household_id for r in inside)
    return {alert_id: frozenset(households) for alert_id, households in found.items()}


@st.composite
def regional_records_strategy(draw: st.DrawFn) -> list[VillageRecord]:
    recs: list[VillageRecord] = []
    for n in range(draw(st.integers(8, 22))):  # employment ends of persons P0..P13 (households of two)
        p = draw(st.integers(0, 13))
        recs.append(record(RETURNS, f"H{p // 2}", f"job-{n}", day(draw(st.integers(0, 60))), f"P{p}"))
    for n in range(draw(st.integers(3, 12))):  # stays of two diseases
        disease = draw(st.sampled_from(["布鲁氏菌病", "肺炎"]))
        recs.append(record(ILLNESS, f"H{draw(st.integers(0, 7))}", f"hosp-{n}", day(draw(st.integers(0, 30))),
                           group=disease))
    for n in range(draw(st.integers(3, 10))):  # HIGH household alerts
        recs.append(record(CLUSTER, f"H{draw(st.integers(0, 7))}", f"alert-{n}", day(draw(st.integers(0, 50)))))
    for n in range(draw(st.integers(0, 9))):  # disaster-loss and farm-disaster rows of households
        recs.append(record(Rule.REGIONAL_DISASTER, f"H{draw(st.integers(0, 7))}", f"dis-{n}",
                           day(draw(st.integers(0, 12)))))
    return recs


@settings(max_examples=60, deadline=None)  # each example is fed in four orders
@given(recs=regional_records_strategy(), data=st.data())
def test_regional_alerts_are_the_same_in_every_arrival_order(recs: list[VillageRecord],
                                                             data: st.DataObject) -> None:
    """The same alert ids, each naming the same households at its last emission, in every order."""
    expected = oracle(recs)
    assert feed_records(recs) == expected
    for _ in range(3):
        assert feed_records(data.draw(st.permutations(recs))) == expected


@settings(max_examples=60, deadline=None)
@given(recs=regional_records_strategy(), data=st.data())
def test_records_given_in_date_order_from_the_state_raise_what_all_records_raise(recs: list[VillageRecord],
                                                                                data: st.DataObject) -> None:
    """`ordered`: the village stage hands `windowed` the rule and group's records within reach from its index, in
    date order; every record then raises the very drafts it raises given the region's records as they came."""
    fired: set[int] = set()
    fired_keys: set[str] = set()
    kept: list[VillageRecord] = []
    state = VillageState(village_code=VILLAGE)
    for rec in data.draw(st.permutations(recs)):
        kept.append(rec)
        state.add_record(rec)
        plain = windowed(VILLAGE, kept, rec, fired, fired_keys, CFG)
        indexed = windowed(VILLAGE, state.records_of(rec.rule, rec.group, *reach(rec, CFG)), rec, fired, fired_keys,
                           CFG, ordered=True)
        assert indexed == plain
        for draft in plain:
            if draft.fact is None:
                fired.add(draft.period)
            else:
                fired_keys.add(draft.fact)


@pytest.mark.parametrize("rule, recs", [
    # the last day of a fixed period and the next period's first days: qualifying windows start in both
    (RETURNS, returned(7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)),
    (ILLNESS, stays("布鲁氏菌病", 13, 14, 15, 16, 17, 18)),
    (CLUSTER, highs(7, 8, 9, 10, 11, 12)),
])
def test_a_cluster_over_a_period_boundary_gives_the_same_alerts_in_every_order(rule: Rule,
                                                                               recs: list[VillageRecord]) -> None:
    expected = oracle(recs)
    assert len(expected) == 2
    shuffled = [random.Random(seed).sample(recs, len(recs)) for seed in range(30)]
    for order in [recs, recs[::-1], *shuffled]:
        assert feed_records(order) == expected


# --- the village state survives the changelog and a restart ---------------------------------------------------------


def test_village_state_keeps_timers_and_fired_keys_through_the_changelog_and_a_restart() -> None:
    stage, _ = water_stage()
    for rec in returned(0, 1, 2, 3, 4, 5, 6, 7, 8, 9):
        village_batch(stage, village_record_msg(TOWNSHIP, rec), ARRIVED)
    for rec in stays("布鲁氏菌病", 0, 1, 2, 3, 4):
        village_batch(stage, village_record_msg(VILLAGE, rec), ARRIVED)
    village, township = stage.state[VILLAGE], stage.state[TOWNSHIP]
    assert village.timers and village.fired_keys and township.fired_keys and village.facts
    restored = {key: VILLAGE_STATE.decode(CODEC, VILLAGE_STATE.encode(CODEC, state))
                for key, state in stage.state.items()}
    assert restored == dict(stage.state)
    assert restored[VILLAGE].timers == village.timers and restored[VILLAGE].fired_keys == village.fired_keys
    assert restored[TOWNSHIP].fired_keys == township.fired_keys and restored[TOWNSHIP].village_code == TOWNSHIP

    fresh = VillageStage(tracked(restored), codec=CODEC, routes=ROUTES, rules=CFG)
    # the periods that alerted are known: one more person or household is the same alert again, grown
    late_return = returned(10, persons=["P10"], households=["H10"])[0]
    (grown,) = regional_alerts(village_batch(fresh, village_record_msg(TOWNSHIP, late_return),
                                           ARRIVED))
    assert (grown["alert_id"], grown["rule"]) == (regional_id(RETURNS, TOWNSHIP, day(0)), "REGIONAL_RETURNS")
    assert len(grown["event_ids"]) == 11 and "有11人结束务工" in grown["reason"]
    late_stay = stays("布鲁氏菌病", 5, households=["H9"])[0]
    (grown,) = regional_alerts(village_batch(fresh, village_record_msg(VILLAGE, late_stay),
                                           ARRIVED))
    assert grown["alert_id"] == regional_id(ILLNESS, VILLAGE, day(0), "布鲁氏菌病")
    assert len(grown["household_ids"]) == 6
    assert fresh.state[VILLAGE].fired_keys == village.fired_keys  # no new period
    # the timer fires at its date, once
    assert village_sweep(fresh, BEFORE_MIDNIGHT) == []
    (high,) = regional_alerts(village_sweep(fresh, AFTER_MIDNIGHT))
    assert (high["rule"], high["severity"], high["alert_id"]) == ("REGIONAL_WATER", "HIGH", water_id())
    assert village_sweep(fresh, AFTER_MIDNIGHT) == []
    again = VILLAGE_STATE.decode(CODEC, VILLAGE_STATE.encode(CODEC, fresh.state[VILLAGE]))
    assert again.timers == []
    assert village_sweep(VillageStage(tracked({VILLAGE: again}), codec=CODEC, routes=ROUTES, rules=CFG),
                         AFTER_MIDNIGHT + dt.timedelta(days=9)) == []


def tracked(states: Mapping[str, VillageState]) -> TrackedDict[VillageState]:
    """A stage's table as the engine loads it from the changelog."""
    table: TrackedDict[VillageState] = TrackedDict()
    for key, state in states.items():
        table[key] = state
    table.take_dirty()
    return table


def test_a_hospitalisation_through_the_household_stage_is_counted_by_disease() -> None:
    households, villages = households_and_village()
    alerts = []
    for i in range(5):
        stay = {"event_id": f"hosp-{i}", "person_key": "a1" * 32, "occurred_at": day(i), "ingested_at": INGESTED,
                "disease": "布鲁氏菌病", "admission_date": day(i), "days": 6, "total_cost": Decimal("3000"),
                "out_of_pocket": Decimal("900"), "settlement_date": day(i + 6)}
        alerts += through(households, villages, HOSPITALIZATION, stay, f"BL-{i:04d}")
    (alert,) = alerts
    assert (alert["rule"], alert["severity"], alert["region_code"]) == ("REGIONAL_ILLNESS", "MEDIUM", VILLAGE)
    assert alert["household_ids"] == [f"BL-{i:04d}" for i in range(5)]
    assert alert["alert_id"] == regional_id(ILLNESS, VILLAGE, day(0), "布鲁氏菌病")


def test_the_risk_cluster_counts_a_re_dated_alert_by_its_date_in_either_order() -> None:
    death_day, told_late = D + dt.timedelta(days=1), D + dt.timedelta(days=49)  # health reported it 7 weeks on
    reports = [(REGISTRATION, registration("reg-1", "DEATH", death_day)),
               (CHRONIC, chronic("chr-1", "DECEASED", diagnosed=dt.date(2025, 6, 1), reported=told_late))]
    outcomes = []
    for order in (reports, reports[::-1]):
        households, villages = households_and_village()
        for i in range(4):  # four households with a HIGH alert on D
            assert through(households, villages, HOUSE, house(f"hs-{i}", grade="D"), f"BL-{i:04d}") == []
        alerts = [a for topic, event in order for a in through(households, villages, topic, event, "BL-0004")]
        outcomes.append([(a["rule"], a["household_ids"]) for a in alerts])
    expected = [("REGIONAL_RISK_CLUSTER", [f"BL-{i:04d}" for i in range(5)])]
    assert outcomes == [expected, expected]
