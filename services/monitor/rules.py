"""Risk rules: pure functions over (event, person, household, history) -> alert drafts.

Nothing here knows Kafka or Faust. Thresholds come from `RuleConfig` (settings: `POVWATCH_RULES__*`).
Events are the decoded Avro records (dicts) of `schemas/avro/povwatch.events.*`.

Rules (issue #2):
    DEATH_IN_HOUSEHOLD  registration change 死亡/注销: HIGH if aged 16-60 at the change date, else MEDIUM
    MEDICAL_EXPENSE     hospitalisation: HIGH if the household's out-of-pocket total over the 365 days up to this
                        admission (this stay included) reaches 50% of annual net income; else MEDIUM if this
                        stay's out-of-pocket >= 10,000 CNY; else nothing. Order-independent: a stay reported
                        late re-judges the later stays whose window it falls in
    DISASTER_LOSS       HIGH if anyone died, the house collapsed or was seriously damaged, or the direct loss
                        reaches 50% of annual net income; else MEDIUM
    SCHOOL_DROPOUT      a child leaves 小学 or 初中: HIGH; other stages: nothing
    ASSET_PURCHASE      a vehicle bought by a member of a household 监测中: LOW; others: nothing
    REGIONAL_DISASTER   >= 5 distinct households of one village with disaster dates within 7 days of each
                        other (latest - earliest <= 7 days): one alert per village and fixed 8-day period
                        in which such a window starts (ids independent of arrival order)
Annual net income = per-capita net income x household size. Ages come from the birth date in the ID number.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from schemas.alerts import Rule, Severity  # the shared vocabulary; re-exported here
from services.monitor.thresholds import RuleConfig

__all__ = [
    "Rule",
    "Severity",
    "RuleConfig",
    "PersonContext",
    "HouseholdContext",
    "MedicalStay",
    "AlertDraft",
    "VillageRecord",
    "RegionalDraft",
    "age_at",
    "EVENT_RULES",
    "evaluate",
    "death_in_household",
    "medical_expense",
    "disaster_loss",
    "school_dropout",
    "asset_purchase",
    "regional_disaster",
    "regional_period",
    "format_cny",
]


@dataclass(frozen=True)
class PersonContext:
    person_key: str
    household_id: str
    birth_date: dt.date
    relation: str
    village_code: str

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> PersonContext:
        return cls(rec["person_key"], rec["household_id"], rec["birth_date"], rec["relation"], rec["village_code"])


@dataclass(frozen=True)
class HouseholdContext:
    household_id: str
    village_code: str
    monitoring_status: str
    per_capita_income: Decimal
    household_size: int

    @property
    def annual_income(self) -> Decimal:
        return self.per_capita_income * self.household_size

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> HouseholdContext:
        return cls(
            rec["household_id"],
            rec["village_code"],
            rec["monitoring_status"],
            Decimal(rec["per_capita_income"]),
            int(rec["household_size"]),
        )


@dataclass(frozen=True)
class MedicalStay:
    """One earlier hospitalisation of the household, as kept in the monitor's history table."""

    event_id: str
    admission_date: dt.date
    out_of_pocket: Decimal
    high: bool = False  # a HIGH alert was raised for the window ending at this stay


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class AlertDraft:
    rule: Rule
    severity: Severity
    household_id: str
    village_code: str
    reason: str
    event_ids: tuple[str, ...]
    occurred_at: dt.date

    @cached_property
    def alert_id(self) -> str:
        """Deterministic: the same rule, household and causing events give the same id."""
        return _digest(self.rule.value, self.household_id, *sorted(self.event_ids))


def age_at(birth: dt.date, on: dt.date) -> int:
    """Age in whole years on a date."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def format_cny(amount: Decimal) -> str:
    """14500 -> '14500元', 1234.5 -> '1234.50元'."""
    q = amount.quantize(Decimal("0.01"))
    text = f"{q:f}"
    return (text[:-3] if text.endswith(".00") else text) + "元"


def _percent(part: Decimal, whole: Decimal) -> str:
    if whole <= 0:
        return "无收入可比"
    return f"{(part * 100 / whole).quantize(Decimal('1'))}%"


_CHANGE_LABEL = {"DEATH": "死亡", "CANCELLED": "注销"}
_DISASTER_LABEL = {
    "FLOOD": "洪涝", "DROUGHT": "干旱", "HAIL": "冰雹", "EARTHQUAKE": "地震", "GEOLOGICAL": "地质灾害",
    "FIRE": "火灾", "WIND": "风灾", "SNOW": "雪灾", "OTHER": "其他",
}
_DAMAGE_LABEL = {"NONE": "无", "MINOR": "一般损坏", "SERIOUS": "严重损坏", "COLLAPSED": "倒塌"}
_STAGE_LABEL = {"PRIMARY": "小学", "JUNIOR": "初中", "SENIOR": "高中", "VOCATIONAL": "中职"}


def death_in_household(
    event: Mapping[str, Any], person: PersonContext, household: HouseholdContext, cfg: RuleConfig
) -> AlertDraft | None:
    change = event["change_type"]
    if change not in _CHANGE_LABEL:
        return None
    age = age_at(person.birth_date, event["change_date"])
    working = cfg.death_working_age_min <= age <= cfg.death_working_age_max
    severity = Severity.HIGH if working else Severity.MEDIUM
    span = f"{cfg.death_working_age_min}-{cfg.death_working_age_max}岁"
    reason = (
        f"家庭成员({person.relation})户籍变动: {_CHANGE_LABEL[change]}, 变动日期{event['change_date']:%Y-%m-%d}, "
        f"时年{age}岁" + (f", 属劳动年龄({span}), 家庭失去劳动力" if working else f", 不在劳动年龄({span})")
    )
    return AlertDraft(Rule.DEATH_IN_HOUSEHOLD, severity, household.household_id, household.village_code,
                      reason, (event["event_id"],), event["change_date"])


def _window(stays: Iterable[MedicalStay], end: MedicalStay, cfg: RuleConfig) -> list[MedicalStay]:
    """The stays in the `medical_window_days` up to and including `end`'s admission."""
    since = end.admission_date - dt.timedelta(days=cfg.medical_window_days)
    return [s for s in stays if since < s.admission_date <= end.admission_date]


def _share_text(total: Decimal, count: int, household: HouseholdContext, cfg: RuleConfig) -> str:
    income = household.annual_income
    return (
        f"近{cfg.medical_window_days}天家庭住院自付合计{format_cny(total)}({count}次), "
        f"占家庭年纯收入{format_cny(income)}(人均{format_cny(household.per_capita_income)}×"
        f"{household.household_size}人)的{_percent(total, income)}, "
        f"达到{_percent(cfg.medical_income_share, Decimal(1))}"
    )


def medical_expense(
    event: Mapping[str, Any],
    person: PersonContext,
    household: HouseholdContext,
    history: Sequence[MedicalStay],
    cfg: RuleConfig,
) -> tuple[list[AlertDraft], list[MedicalStay]]:
    """Alerts for a hospitalisation, and the household's new stay history.

    `history` holds the household's earlier-received stays. Stays can arrive out of order (two members'
    records travel on different partitions), so a late stay with an earlier admission date also re-judges the
    later stays whose 365-day window it falls in: the outcome does not depend on arrival order."""
    this = MedicalStay(event["event_id"], event["admission_date"], event["out_of_pocket"])
    others = [s for s in history if s.event_id != this.event_id]
    stays = [*others, this]
    threshold = household.annual_income * cfg.medical_income_share
    drafts: list[AlertDraft] = []
    window = _window(stays, this, cfg)
    total = sum((s.out_of_pocket for s in window), Decimal(0))

    def stay() -> str:  # only written for an alert
        return (f"住院个人自付{format_cny(this.out_of_pocket)}(入院{this.admission_date:%Y-%m-%d}, "
                f"{event['disease']}, {event['days']}天, {person.relation})")

    if total >= threshold:
        drafts.append(AlertDraft(Rule.MEDICAL_EXPENSE, Severity.HIGH, household.household_id, household.village_code,
                                 f"{stay()}; {_share_text(total, len(window), household, cfg)}",
                                 tuple(sorted(s.event_id for s in window)), this.admission_date))
        this = MedicalStay(this.event_id, this.admission_date, this.out_of_pocket, high=True)
    elif this.out_of_pocket >= cfg.medical_stay_out_of_pocket:
        drafts.append(AlertDraft(Rule.MEDICAL_EXPENSE, Severity.MEDIUM, household.household_id,
                                 household.village_code,
                                 f"{stay()}, 单次自付达到{format_cny(cfg.medical_stay_out_of_pocket)}",
                                 (this.event_id,), this.admission_date))
    updated = [this]
    span = dt.timedelta(days=cfg.medical_window_days)
    for later in others:  # the later stays whose window this one falls in
        if not later.high and later.admission_date - span < this.admission_date <= later.admission_date:
            late_window = _window(stays, later, cfg)
            late_total = sum((s.out_of_pocket for s in late_window), Decimal(0))
            if late_total >= threshold:
                draft = AlertDraft(
                    Rule.MEDICAL_EXPENSE, Severity.HIGH, household.household_id, household.village_code,
                    f"补报住院记录(入院{this.admission_date:%Y-%m-%d}, 自付{format_cny(this.out_of_pocket)})后重新评估"
                    f"{later.admission_date:%Y-%m-%d}入院的住院(自付{format_cny(later.out_of_pocket)}): "
                    + _share_text(late_total, len(late_window), household, cfg),
                    tuple(sorted(s.event_id for s in late_window)), later.admission_date)
                if all(d.alert_id != draft.alert_id for d in drafts):
                    drafts.append(draft)
                later = MedicalStay(later.event_id, later.admission_date, later.out_of_pocket, high=True)
        updated.append(later)
    return drafts, _prune(updated, cfg)


def _prune(stays: list[MedicalStay], cfg: RuleConfig) -> list[MedicalStay]:
    """Drop stays past the history horizon (`history_horizon_days` before the latest admission), oldest first.

    The horizon is longer than the window on purpose: a stay reported late, with an admission date before the
    latest one, must still find the earlier stays of its own window (arrival-order independence)."""
    latest = max(s.admission_date for s in stays)
    horizon = latest - dt.timedelta(days=cfg.history_horizon_days)
    return sorted((s for s in stays if s.admission_date > horizon), key=lambda s: (s.admission_date, s.event_id))


def disaster_loss(event: Mapping[str, Any], household: HouseholdContext, cfg: RuleConfig) -> AlertDraft:
    loss: Decimal = event["direct_loss"]
    income = household.annual_income
    grave = []
    if event["deaths"] > 0:
        grave.append(f"死亡{event['deaths']}人")
    if event["house_damage"] in ("COLLAPSED", "SERIOUS"):
        grave.append(f"房屋{_DAMAGE_LABEL[event['house_damage']]}")
    if loss >= income * cfg.disaster_income_share:
        grave.append(f"损失达家庭年纯收入的{_percent(cfg.disaster_income_share, Decimal(1))}")
    reason = (
        f"{_DISASTER_LABEL.get(event['disaster_type'], event['disaster_type'])}灾害"
        f"({event['disaster_date']:%Y-%m-%d}): 死亡{event['deaths']}人, 受伤{event['injuries']}人, "
        f"房屋{_DAMAGE_LABEL.get(event['house_damage'], event['house_damage'])}, 直接经济损失{format_cny(loss)}, "
        f"占家庭年纯收入{format_cny(income)}的{_percent(loss, income)}"
    )
    if grave:
        reason += "; 严重: " + ", ".join(grave)
    severity = Severity.HIGH if grave else Severity.MEDIUM
    return AlertDraft(Rule.DISASTER_LOSS, severity, household.household_id, household.village_code, reason,
                      (event["event_id"],), event["disaster_date"])


def school_dropout(
    event: Mapping[str, Any], person: PersonContext, household: HouseholdContext, cfg: RuleConfig
) -> AlertDraft | None:
    if event["stage"] not in ("PRIMARY", "JUNIOR"):
        return None
    age = age_at(person.birth_date, event["dropout_date"])
    reason = (
        f"义务教育阶段辍学: {_STAGE_LABEL[event['stage']]}{event['grade']}, {event['school']}, "
        f"辍学日期{event['dropout_date']:%Y-%m-%d}, 学生{age}岁({person.relation})"
    )
    return AlertDraft(Rule.SCHOOL_DROPOUT, Severity.HIGH, household.household_id, household.village_code, reason,
                      (event["event_id"],), event["dropout_date"])


def asset_purchase(
    event: Mapping[str, Any], person: PersonContext, household: HouseholdContext, cfg: RuleConfig
) -> AlertDraft | None:
    if household.monitoring_status != "MONITORING":
        return None
    price = event.get("price")
    reason = (
        f"监测中家庭成员({person.relation})购买车辆: {event['vehicle_type']} {event['model']}, "
        f"购买日期{event['purchase_date']:%Y-%m-%d}"
        + (f", 购车价格{format_cny(price)}" if price is not None else "")
        + "; 请在数据比对环节核查家庭资产"
    )
    return AlertDraft(Rule.ASSET_PURCHASE, Severity.LOW, household.household_id, household.village_code, reason,
                      (event["event_id"],), event["purchase_date"])


EventRule = Callable[
    [Mapping[str, Any], PersonContext, HouseholdContext, Sequence["MedicalStay"], RuleConfig],
    "tuple[list[AlertDraft], list[MedicalStay] | None]",
]


def _single(rule: Callable[..., AlertDraft | None], *needs: str) -> EventRule:
    """A rule of one event that gives at most one draft and keeps no history."""

    def judge(event: Mapping[str, Any], person: PersonContext, household: HouseholdContext,
              history: Sequence[MedicalStay], cfg: RuleConfig) -> tuple[list[AlertDraft], list[MedicalStay] | None]:
        given = {"event": event, "person": person, "household": household, "cfg": cfg}
        draft = rule(*(given[name] for name in needs))
        return ([draft] if draft is not None else []), None

    return judge


# The household rules by name: a feed's declaration (schemas.catalog.Feed.rules) says which judge its events.
# REGIONAL_DISASTER is the village stage's (regional_disaster below), not a rule of one event.
EVENT_RULES: dict[str, EventRule] = {
    Rule.MEDICAL_EXPENSE: medical_expense,
    Rule.DEATH_IN_HOUSEHOLD: _single(death_in_household, "event", "person", "household", "cfg"),
    Rule.DISASTER_LOSS: _single(disaster_loss, "event", "household", "cfg"),
    Rule.SCHOOL_DROPOUT: _single(school_dropout, "event", "person", "household", "cfg"),
    Rule.ASSET_PURCHASE: _single(asset_purchase, "event", "person", "household", "cfg"),
}


def evaluate(
    rules: Iterable[str],
    event: Mapping[str, Any],
    person: PersonContext,
    household: HouseholdContext,
    history: Sequence[MedicalStay],
    cfg: RuleConfig,
) -> tuple[list[AlertDraft], list[MedicalStay] | None]:
    """The alerts the named rules (a feed's `rules`) raise for one event, and the household's new medical
    history when a rule changed it (else None). A feed without household rules raises nothing here."""
    drafts: list[AlertDraft] = []
    new_history: list[MedicalStay] | None = None
    for name in rules:
        rule = EVENT_RULES.get(name)
        if rule is None:
            continue  # a rule of another stage (REGIONAL_DISASTER)
        found, changed = rule(event, person, household, history if new_history is None else new_history, cfg)
        drafts += found
        new_history = changed if changed is not None else new_history
    return drafts, new_history


# --- regional ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VillageRecord:
    household_id: str
    event_id: str
    disaster_date: dt.date


@dataclass(frozen=True)
class RegionalDraft:
    village_code: str
    period: int  # the fixed period (see `regional_period`) in which the window starts
    window_start: dt.date
    window_end: dt.date
    household_ids: tuple[str, ...]
    event_ids: tuple[str, ...]
    reason: str
    severity: Severity = Severity.HIGH

    @property
    def alert_id(self) -> str:
        """Deterministic and independent of arrival order: the village and the fixed period."""
        return _digest(Rule.REGIONAL_DISASTER.value, self.village_code, str(self.period))


def regional_period(day: dt.date, cfg: RuleConfig) -> int:
    """The fixed period of `regional_window_days + 1` days (counted from 0001-01-01) that holds `day`."""
    return day.toordinal() // (cfg.regional_window_days + 1)


def regional_disaster(
    village_code: str,
    records: Sequence[VillageRecord],
    fired: Collection[int],
    cfg: RuleConfig,
) -> list[RegionalDraft]:
    """One draft per fixed period that now holds the start of a qualifying window and has not alerted yet.

    A window is `regional_window_days` long (latest - earliest <= window) and qualifies with at least
    `regional_min_households` distinct households. Each period alerts once, under an id made of the village
    and the period, so the alerts raised are a function of the records received, not of their arrival order.
    A cluster whose qualifying windows start in two periods gives two alerts (they open one village case)."""
    span = dt.timedelta(days=cfg.regional_window_days)
    ordered = sorted(records, key=lambda r: (r.disaster_date, r.household_id, r.event_id))
    drafts: list[RegionalDraft] = []
    done: set[int] = set(fired)
    for start in sorted({r.disaster_date for r in ordered}):
        period = regional_period(start, cfg)
        if period in done:
            continue
        inside = [r for r in ordered if start <= r.disaster_date <= start + span]
        households = sorted({r.household_id for r in inside})
        if len(households) < cfg.regional_min_households:
            continue
        end = max(r.disaster_date for r in inside)
        reason = (
            f"区域性灾害风险: 村(社区){village_code}在{start:%Y-%m-%d}至{end:%Y-%m-%d}期间有{len(households)}户"
            f"监测家庭报告灾害损失(阈值{cfg.regional_min_households}户/{cfg.regional_window_days}天), 防止规模性返贫"
        )
        drafts.append(RegionalDraft(village_code, period, start, end, tuple(households),
                                    tuple(sorted(r.event_id for r in inside)), reason))
        done.add(period)
    return drafts
