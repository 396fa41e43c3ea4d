"""The regional rules: large-scale relapse seen early, per village (12 digits) or township (9 digits).

    windowed counts  REGIONAL_DISASTER (rules.regional_disaster), REGIONAL_RETURNS, REGIONAL_ILLNESS,
                     REGIONAL_RISK_CLUSTER: distinct households (persons, for returns) of one region whose records
                     lie within a window; one alert per region, group and fixed period in which a qualifying
                     window starts, so the alerts are a function of the records, not of their arrival order
    village rows     a village-level farm-disaster row on its own (REGIONAL_DISASTER), drinking water naming no
                     household (REGIONAL_WATER, with its timer), collective income (COLLECTIVE_INCOME_DROP)

Pure functions; the village stage (handlers.VillageStage) keeps the records, facts, fired periods and timers.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from schemas.alerts import Rule, Severity
from services.monitor.household_rules import WATER, water_problem
from services.monitor.rules import (
    Fact,
    RegionalDraft,
    RuleConfig,
    Timer,
    VillageRecord,
    format_cny,
    percent,
    period_draft,
    record_date,
    regional_disaster,
)

__all__ = ["Window", "window_of", "windowed", "reach", "beyond_list", "fills", "fired_key", "village_row",
           "fire_village", "township_of", "COUNTED_RULES"]


def township_of(village_code: str) -> str:
    """The township (乡镇) of a 12-digit village code: its first 9 digits."""
    return village_code[:9]


@dataclass(frozen=True)
class Window:
    """A windowed count: at least `minimum` distinct members within `days`."""

    rule: Rule
    minimum: int
    days: int
    severity: Severity
    by_person: bool  # count persons (else households)
    describe: Callable[[str, str, dt.date, dt.date, int, int], str]  # region, group, start, end, count, households


_WINDOWS: dict[tuple[str, int], tuple[RuleConfig, Window]] = {}  # (rule, id of its config) -> (the config, window)


def window_of(rule: str, cfg: RuleConfig) -> Window:
    """The windowed count of `rule` under `cfg` (made once per rule and configuration: asked for every record)."""
    held = _WINDOWS.get((rule, id(cfg)))
    if held is not None and held[0] is cfg:
        return held[1]
    window = _window_of(rule, cfg)
    if len(_WINDOWS) >= 256:  # a process judges with one configuration; tests make many
        _WINDOWS.clear()
    _WINDOWS[(rule, id(cfg))] = (cfg, window)
    return window


def _window_of(rule: str, cfg: RuleConfig) -> Window:
    if rule == Rule.REGIONAL_RETURNS:
        return Window(Rule.REGIONAL_RETURNS, cfg.returns_min_persons, cfg.returns_window_days, Severity.MEDIUM, True,
                      lambda region, group, start, end, n, h: (
                          f"区域性务工返乡风险: 乡镇{region}在{start:%Y-%m-%d}至{end:%Y-%m-%d}期间有{n}人结束务工"
                          f"(涉及{h}户; 阈值{cfg.returns_min_persons}人/{cfg.returns_window_days}天), "
                          "关注规模性失业返贫"))
    if rule == Rule.REGIONAL_ILLNESS:
        return Window(Rule.REGIONAL_ILLNESS, cfg.illness_min_households, cfg.illness_window_days, Severity.MEDIUM,
                      False, lambda region, group, start, end, n, h: (
                          f"区域性疾病风险: 村(社区){region}在{start:%Y-%m-%d}至{end:%Y-%m-%d}期间有{n}户因{group}住院"
                          f"(阈值{cfg.illness_min_households}户/{cfg.illness_window_days}天)"))
    if rule == Rule.REGIONAL_RISK_CLUSTER:
        return Window(Rule.REGIONAL_RISK_CLUSTER, cfg.cluster_min_households, cfg.cluster_window_days, Severity.HIGH,
                      False, lambda region, group, start, end, n, h: (
                          f"区域性返贫风险聚集: 村(社区){region}在{start:%Y-%m-%d}至{end:%Y-%m-%d}期间"
                          f"有{n}户出现高风险预警"
                          f"(阈值{cfg.cluster_min_households}户/{cfg.cluster_window_days}天), 防止规模性返贫"))
    raise KeyError(f"{rule} is not a windowed regional rule")


COUNTED_RULES = (Rule.REGIONAL_DISASTER, Rule.REGIONAL_RETURNS, Rule.REGIONAL_ILLNESS, Rule.REGIONAL_RISK_CLUSTER)


def fired_key(rule: str, group: str, first_day: dt.date) -> str:
    """What a windowed alert is about: its rule, group and the first day of its fixed period."""
    return f"{rule}|{group}|{first_day.isoformat()}"


def _drafts(region: str, group: str, records: Sequence[VillageRecord], window: Window,
            periods: Iterable[int]) -> dict[int, RegionalDraft]:
    out = {}
    for period in periods:
        found = period_draft(region, records, period, days=window.days, minimum=window.minimum,
                             by_person=window.by_person, ordered=True)
        if found is None:
            continue
        start, end, households, events, _ = found
        first = dt.date.fromordinal(max(1, period * (window.days + 1)))
        out[period] = RegionalDraft(region, period, start, end, households, events, "",  # described if sent
                                    window.severity, window.rule, fired_key(window.rule.value, group, first))
    return out


def _days(rule: str, cfg: RuleConfig) -> int:
    return cfg.regional_window_days if rule == Rule.REGIONAL_DISASTER else window_of(rule, cfg).days


def _periods(new: VillageRecord, cfg: RuleConfig) -> range:
    days = _days(new.rule, cfg)
    return range((new.disaster_date - dt.timedelta(days=days)).toordinal() // (days + 1),
                 new.disaster_date.toordinal() // (days + 1) + 1)


def full_key(rule: str, group: str, period: int, days: int) -> str:
    """The mark of a period whose alert lists `regional_list_max` households already (it is sent no more)."""
    return "full|" + fired_key(rule, group, dt.date.fromordinal(max(1, period * (days + 1))))


def beyond_list(new: VillageRecord, fired_keys: Collection[str], cfg: RuleConfig,
                has_start: Callable[[dt.date, dt.date], bool]) -> bool:
    """Whether every period `new` can count in has alerted with the most households an alert lists: the record
    can then change no alert, and is neither kept nor counted (state and work stay bounded however dense). An
    earlier period it can reach counts only if a window starts in it (`has_start(first day, last day)`: a record
    of the same rule and group is dated in it)."""
    days = _days(new.rule, cfg)
    own = new.disaster_date.toordinal() // (days + 1)
    for period in _periods(new, cfg):
        if full_key(new.rule, new.group, period, days) in fired_keys:
            continue
        first = dt.date.fromordinal(max(1, period * (days + 1)))
        if period == own or has_start(first, first + dt.timedelta(days=days)):
            return False
    return True


def fills(draft: RegionalDraft, cfg: RuleConfig) -> str | None:
    """The full mark to keep once an alert sent lists `regional_list_max` households or more."""
    if len(draft.household_ids) < cfg.regional_list_max:
        return None
    return full_key(draft.rule.value, _group_of(draft), draft.period, _days(draft.rule.value, cfg))


def _group_of(draft: RegionalDraft) -> str:
    return draft.fact.split("|")[1] if draft.fact else ""


def reach(new: VillageRecord, cfg: RuleConfig) -> tuple[dt.date, dt.date]:
    """The dates of the records that can share a period's evidence with `new` (what `windowed` looks at)."""
    days = _days(new.rule, cfg)
    span = dt.timedelta(days=days)
    return new.disaster_date - 2 * span - dt.timedelta(days=days + 1), new.disaster_date + 2 * span


def windowed(region: str, records: Sequence[VillageRecord], new: VillageRecord, fired: Collection[int],
             fired_keys: Collection[str], cfg: RuleConfig, ordered: bool = False) -> list[RegionalDraft]:
    """The alerts a record just added to the region's `records` raises: a period it makes qualify for the first
    time, or a period that alerted already to which it adds a household (a person, for returns): the same alert id
    again, with every household and event behind it, so the households an alert names in the end do not depend on
    the order the records came in. Only the periods whose windows can hold the new record are looked at.
    `records` are the region's (those of the new one's rule and group suffice), the new one among them; `ordered`:
    they are exactly the new one's rule and group's within `reach`, in date order (`VillageState.records_of`)."""
    if new.rule == Rule.REGIONAL_DISASTER:
        days = cfg.regional_window_days
        window = Window(Rule.REGIONAL_DISASTER, cfg.regional_min_households, days, Severity.HIGH, False,
                        lambda *_: "")
    else:
        window = window_of(new.rule, cfg)
        days = window.days
    periods = _periods(new, cfg)
    if ordered:
        mine = records
    else:  # in date order, as the period drafts take them
        lo, hi = reach(new, cfg)
        mine = sorted((r for r in records if r.rule == new.rule and r.group == new.group
                       and lo <= r.disaster_date <= hi), key=record_date)

    def drafts(records: Sequence[VillageRecord], among: Iterable[int]) -> dict[int, RegionalDraft]:
        if new.rule == Rule.REGIONAL_DISASTER:
            return {d.period: d for d in regional_disaster(region, records, (), cfg, among, ordered=True)}
        return _drafts(region, new.group, records, window, among)

    now = drafts(mine, periods)
    # what the periods that alerted already held before this record (only they can be sent again)
    fired_before = [p for p, d in now.items() if (p in fired if d.fact is None else d.fact in fired_keys)]
    was = drafts([r for r in mine if r.event_id != new.event_id], fired_before) if fired_before else {}
    by_id = {r.event_id: r for r in mine}

    def members(draft: RegionalDraft) -> set[str]:
        """Who the alert counts: its households, or for REGIONAL_RETURNS its persons."""
        chosen = [by_id[e] for e in draft.event_ids if e in by_id]
        return {r.person_key or r.household_id for r in chosen} if window.by_person else set(draft.household_ids)

    out = []
    for period, draft in sorted(now.items()):
        done = period in fired if draft.fact is None else draft.fact in fired_keys
        if full_key(new.rule, new.group, period, days) in fired_keys:
            continue  # it listed the most households an alert lists: sent no more
        if not done or (period in was and members(draft) > members(was[period])):
            out.append(draft if draft.reason else replace(draft, reason=window.describe(
                region, new.group, draft.window_start, draft.window_end, len(members(draft)),
                len(draft.household_ids))))
    return out


# --- rows of a village naming no household ---------------------------------------------------------------------


@dataclass
class VillageVerdict:
    drafts: list[RegionalDraft]
    timers: list[Timer]
    cancel: list[tuple[str, str]]


def _single(region: str, rule: Rule, severity: Severity, day: dt.date, event_ids: Iterable[str], reason: str,
            fact: str) -> RegionalDraft:
    return RegionalDraft(region, 0, day, day, (), tuple(sorted(set(event_ids))), reason, severity, rule, fact)


def _farm(region: str, event: Mapping[str, Any], cfg: RuleConfig) -> VillageVerdict:
    lost: Decimal = event["lost_area"]
    dead: int = event["livestock_deaths"]
    if lost < cfg.village_lost_area_mu and dead < cfg.village_livestock_deaths:
        return VillageVerdict([], [], [])
    reason = (f"区域性灾害风险: 村(社区){region}农业灾情({event['disaster_date']:%Y-%m-%d}, {event['affected']}): "
              f"绝收{lost}亩, 死亡牲畜{dead}头只, 直接经济损失{format_cny(event['direct_loss'])}"
              f"(阈值: 绝收{cfg.village_lost_area_mu}亩或死亡牲畜{cfg.village_livestock_deaths}头只)")
    return VillageVerdict([_single(region, Rule.REGIONAL_DISASTER, Severity.HIGH, event["disaster_date"],
                                   (event["event_id"],), reason, f"row|{event['event_id']}")], [], [])


def _water_draft(region: str, found: dt.date, event_id: str, problem: str, late: bool,
                 cfg: RuleConfig) -> RegionalDraft:
    reason = f"村(社区){region}饮水安全问题({problem}), 发现日期{found:%Y-%m-%d}, 尚未解决"
    if late:
        reason += f", 已超过{cfg.water_unsolved_days}天"
    return _single(region, Rule.REGIONAL_WATER, Severity.HIGH if late else Severity.MEDIUM, found, (event_id,),
                   reason, found.isoformat())


def _resolved(facts: Iterable[Fact], found: dt.date) -> bool:
    return any(f.topic == WATER and f.person_key is None and f.date("found_date") == found and f.get("resolved_date")
               for f in facts)


def _water(region: str, event: Mapping[str, Any], facts: Sequence[Fact], today: dt.date,
           cfg: RuleConfig) -> VillageVerdict:
    found: dt.date = event["found_date"]
    if event.get("resolved_date") is not None:
        return VillageVerdict([], [], [(Rule.REGIONAL_WATER.value, found.isoformat())])
    if _resolved(facts, found):
        return VillageVerdict([], [], [])
    due = found + dt.timedelta(days=cfg.water_unsolved_days)
    late = today >= due
    timers = [] if late else [Timer(Rule.REGIONAL_WATER.value, found.isoformat(), due, found, event["event_id"])]
    return VillageVerdict([_water_draft(region, found, event["event_id"], water_problem(event), late, cfg)],
                          timers, [])


def _collective(region: str, event: Mapping[str, Any], cfg: RuleConfig) -> VillageVerdict:
    now: Decimal = event["distributable_income"]
    before: Decimal = event["previous_distributable_income"]
    year = event["year"]
    if before <= 0:
        return VillageVerdict([], [], [])
    if now == 0:
        severity = Severity.HIGH
    elif now < before * cfg.collective_drop_share:
        severity = Severity.MEDIUM
    else:
        return VillageVerdict([], [], [])
    reason = (f"村集体可分配收益{format_cny(now)}({year}年), 上年{format_cny(before)}, 下降"
              f"{percent(before - now, before)}" + ("(降为零)" if now == 0 else
                                                   f", 低于上年的{percent(cfg.collective_drop_share, Decimal(1))}"))
    return VillageVerdict([_single(region, Rule.COLLECTIVE_INCOME_DROP, severity, event["occurred_at"],
                                   (event["event_id"],), reason, str(year))], [], [])


def village_row(rules: Collection[str], region: str, event: Mapping[str, Any], facts: Sequence[Fact],
                today: dt.date, cfg: RuleConfig) -> VillageVerdict:
    """What a row of a village naming no household raises (its feed's regional rules)."""
    if Rule.REGIONAL_DISASTER in rules and "lost_area" in event:
        return _farm(region, event, cfg)
    if Rule.REGIONAL_WATER in rules:
        return _water(region, event, facts, today, cfg)
    if Rule.COLLECTIVE_INCOME_DROP in rules:
        return _collective(region, event, cfg)
    return VillageVerdict([], [], [])


def fire_village(timer: Timer, region: str, facts: Sequence[Fact], cfg: RuleConfig) -> list[RegionalDraft]:
    """A REGIONAL_WATER timer that came due: HIGH unless the problem was solved meanwhile."""
    if timer.rule != Rule.REGIONAL_WATER or _resolved(facts, timer.ref):
        return []
    setter = next((f for f in facts if f.event_id == timer.event_id), None)
    problem = setter.get("indicators") or "" if setter else ""
    labels = {"QUANTITY": "水量", "QUALITY": "水质", "CONVENIENCE": "用水方便程度", "SUPPLY_RATE": "供水保证率"}
    problem = "、".join(labels.get(p, p) for p in problem.split("、") if p)
    return [_water_draft(region, timer.ref, timer.event_id, problem, True, cfg)]
