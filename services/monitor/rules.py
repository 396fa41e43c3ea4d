"""Risk rules: pure functions over (event, context) -> a verdict (alert drafts, history, timers).

Nothing here knows Kafka. Thresholds come from `RuleConfig` (schemas/thresholds.py: `POVWATCH_RULES__*`
and `POVWATCH_RULES_FILE`). Events are the decoded Avro records (dicts) of `schemas/avro/povwatch.events.*`; the
household's earlier events are `Fact`s (their fields as text). docs/rules.md describes every rule.

This module holds the vocabulary (contexts, facts, timers, drafts, verdicts) and the first rules:
    DEATH_IN_HOUSEHOLD  a death reported by public-security (户籍 死亡/注销, 交通事故 死亡) or health (慢病 死亡):
                        HIGH if aged 16-60 at the earliest reported date, else MEDIUM; one alert per person
    MEDICAL_EXPENSE     hospitalisation: HIGH if the household's out-of-pocket total over the 365 days up to this
                        admission (this stay included) reaches 50% of annual net income; else MEDIUM if this
                        stay's out-of-pocket >= 10,000 CNY; else nothing. Order-independent: a stay reported
                        late re-judges the later stays whose window it falls in
    DISASTER_LOSS       HIGH if anyone died, the house collapsed or was seriously damaged, or the direct loss
                        reaches 50% of annual net income; else MEDIUM
    SCHOOL_DROPOUT      a child leaves 小学 or 初中 (dropout feed or student roll): HIGH; one alert per child and
                        school year
    ASSET_PURCHASE      see household_rules.asset_purchase
    REGIONAL_DISASTER   >= 5 distinct households of one village with disaster dates within 7 days of each
                        other (latest - earliest <= 7 days): one alert per village and fixed 8-day period
                        in which such a window starts (ids independent of arrival order)
The other rules are in household_rules.py and regional_rules.py. Annual net income = per-capita net income x
household size. Ages come from the birth date in the ID number.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from schemas.alerts import Rule, Severity  # the shared vocabulary; re-exported here
from schemas.thresholds import RuleConfig

__all__ = [
    "Rule",
    "Severity",
    "RuleConfig",
    "Fact",
    "Timer",
    "Context",
    "Verdict",
    "as_fact",
    "text_value",
    "record_date",
    "school_year",
    "PersonContext",
    "HouseholdContext",
    "MedicalStay",
    "AlertDraft",
    "VillageRecord",
    "RegionalDraft",
    "age_at",
    "medical_expense",
    "disaster_loss",
    "regional_disaster",
    "regional_period",
    "format_cny",
    "percent",
    "CHANGE_LABEL",
    "DISASTER_LABEL",
    "DAMAGE_LABEL",
]


@dataclass(frozen=True)
class Fact:
    """An event kept as a fact of its household or village (see stages.fact_of): its feed's topic, who it is
    about, its date and its fields as text (enum symbols, ISO dates, decimals; several values joined by 、)."""

    topic: str
    event_id: str
    person_key: str | None
    day: dt.date
    values: dict[str, str]

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def date(self, name: str) -> dt.date | None:
        text = self.values.get(name)
        return dt.date.fromisoformat(text) if text else None

    def amount(self, name: str) -> Decimal | None:
        text = self.values.get(name)
        return Decimal(text) if text else None


def text_value(value: Any) -> str:
    """A field's value as a fact keeps it."""
    if value.__class__ is str:  # most fields: as they are
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "、".join(text_value(v) for v in value)
    return str(value)


_ENVELOPE = frozenset({"event_id", "person_key", "head_person_key", "household_id", "occurred_at", "ingested_at",
                       "source"})


def as_fact(topic: str, record: Mapping[str, Any]) -> Fact:
    """An event as a fact: who, when, its own fields as text."""
    values = {k: text_value(v) for k, v in record.items() if k not in _ENVELOPE and v is not None}
    ingested = record.get("ingested_at")
    if isinstance(ingested, dt.datetime):
        values["ingested_on"] = ingested.date().isoformat()  # when the department reported it
    person = record.get("person_key") or record.get("head_person_key")
    return Fact(topic, record["event_id"], person, record["occurred_at"], values)


@dataclass(frozen=True)
class Timer:
    """A rule waiting for a day: fired by wall-clock time (the monitor's sweep), cancelled by a resolving row."""

    rule: str
    fact: str  # the alert's fact (its id follows from rule, subject and fact)
    due: dt.date
    ref: dt.date  # the day it counts from
    event_id: str  # the event that set it
    person_key: str | None = None


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
    fact: str | None = None  # what the alert is about (a person, a school year, a 年度...); None: its events

    @cached_property
    def alert_id(self) -> str:
        """Deterministic, never from arrival order: rule, household and the fact (or the causing events, for
        rules whose fact is a set of events, such as a medical window)."""
        if self.fact is not None:
            return _digest(self.rule.value, self.household_id, "fact", self.fact)
        return _digest(self.rule.value, self.household_id, *sorted(self.event_ids))


@dataclass(frozen=True)
class Context:
    """What a household rule judges an event with: the member (None for a report naming only the household),
    the household, its earlier facts and medical stays, today's date in the prefecture and the thresholds."""

    topic: str
    person: PersonContext | None
    household: HouseholdContext
    facts: Sequence[Fact]
    stays: Sequence[MedicalStay]
    today: dt.date
    cfg: RuleConfig


@dataclass
class Verdict:
    """What the rules decided for one event (or one timer)."""

    drafts: list[AlertDraft] = field(default_factory=list)
    stays: list[MedicalStay] | None = None  # the household's new medical history, when it changed
    timers: list[Timer] = field(default_factory=list)  # to set
    cancel: list[tuple[str, str]] = field(default_factory=list)  # (rule, fact) of timers to drop

    def add(self, other: Verdict) -> None:
        self.drafts += other.drafts
        self.stays = other.stays if other.stays is not None else self.stays
        self.timers += other.timers
        self.cancel += other.cancel


def school_year(day: dt.date) -> int:
    """The school year (1 September - 31 August) holding `day`, by its first calendar year."""
    return day.year if day.month >= 9 else day.year - 1


def age_at(birth: dt.date, on: dt.date) -> int:
    """Age in whole years on a date."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def format_cny(amount: Decimal) -> str:
    """14500 -> '14500元', 1234.5 -> '1234.50元'."""
    q = amount.quantize(Decimal("0.01"))
    text = f"{q:f}"
    return (text[:-3] if text.endswith(".00") else text) + "元"


def percent(part: Decimal, whole: Decimal) -> str:
    if whole <= 0:
        return "无收入可比"
    return f"{(part * 100 / whole).quantize(Decimal('1'))}%"


CHANGE_LABEL = {"DEATH": "死亡", "CANCELLED": "注销"}
DISASTER_LABEL = {
    "FLOOD": "洪涝", "DROUGHT": "干旱", "HAIL": "冰雹", "EARTHQUAKE": "地震", "GEOLOGICAL": "地质灾害",
    "FIRE": "火灾", "WIND": "风灾", "SNOW": "雪灾", "OTHER": "其他",
}
DAMAGE_LABEL = {"NONE": "无", "MINOR": "一般损坏", "SERIOUS": "严重损坏", "COLLAPSED": "倒塌"}


def _window(stays: Iterable[MedicalStay], end: MedicalStay, cfg: RuleConfig) -> list[MedicalStay]:
    """The stays in the `medical_window_days` up to and including `end`'s admission."""
    since = end.admission_date - dt.timedelta(days=cfg.medical_window_days)
    return [s for s in stays if since < s.admission_date <= end.admission_date]


def _share_text(total: Decimal, count: int, household: HouseholdContext, cfg: RuleConfig) -> str:
    income = household.annual_income
    return (
        f"近{cfg.medical_window_days}天家庭住院自付合计{format_cny(total)}({count}次), "
        f"占家庭年纯收入{format_cny(income)}(人均{format_cny(household.per_capita_income)}×"
        f"{household.household_size}人)的{percent(total, income)}, "
        f"达到{percent(cfg.medical_income_share, Decimal(1))}"
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
        grave.append(f"房屋{DAMAGE_LABEL[event['house_damage']]}")
    if loss >= income * cfg.disaster_income_share:
        grave.append(f"损失达家庭年纯收入的{percent(cfg.disaster_income_share, Decimal(1))}")
    reason = (
        f"{DISASTER_LABEL.get(event['disaster_type'], event['disaster_type'])}灾害"
        f"({event['disaster_date']:%Y-%m-%d}): 死亡{event['deaths']}人, 受伤{event['injuries']}人, "
        f"房屋{DAMAGE_LABEL.get(event['house_damage'], event['house_damage'])}, 直接经济损失{format_cny(loss)}, "
        f"占家庭年纯收入{format_cny(income)}的{percent(loss, income)}"
    )
    if grave:
        reason += "; 严重: " + ", ".join(grave)
    severity = Severity.HIGH if grave else Severity.MEDIUM
    return AlertDraft(Rule.DISASTER_LOSS, severity, household.household_id, household.village_code, reason,
                      (event["event_id"],), event["disaster_date"])


# --- regional ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VillageRecord:
    """One record a regional rule counts (the name is the first one's): a household's disaster, stay, return
    home or HIGH alert, in its region (a village, or a township for REGIONAL_RETURNS)."""

    household_id: str
    event_id: str
    disaster_date: dt.date  # the day the window counts by
    rule: str = Rule.REGIONAL_DISASTER.value
    person_key: str | None = None  # REGIONAL_RETURNS counts persons
    group: str = ""  # counted apart per group (REGIONAL_ILLNESS: the disease)


@dataclass(frozen=True)
class RegionalDraft:
    village_code: str  # the region: a village (12 digits) or a township (9)
    period: int  # the fixed period (see `regional_period`) in which the window starts
    window_start: dt.date
    window_end: dt.date
    household_ids: tuple[str, ...]
    event_ids: tuple[str, ...]
    reason: str
    severity: Severity = Severity.HIGH
    rule: Rule = Rule.REGIONAL_DISASTER
    fact: str | None = None  # None: the period (windowed counts)

    @property
    def alert_id(self) -> str:
        """Deterministic and independent of arrival order: rule, region and the fixed period (or the fact)."""
        if self.rule == Rule.REGIONAL_DISASTER and self.fact is None:
            return _digest(Rule.REGIONAL_DISASTER.value, self.village_code, str(self.period))
        return _digest(self.rule.value, self.village_code, "fact",
                       self.fact if self.fact is not None else f"period|{self.period}")


def regional_period(day: dt.date, cfg: RuleConfig) -> int:
    """The fixed period of `regional_window_days + 1` days (counted from 0001-01-01) that holds `day`."""
    return day.toordinal() // (cfg.regional_window_days + 1)


def _member(r: VillageRecord, by_person: bool) -> str:
    return (r.person_key or r.household_id) if by_person else r.household_id


def period_draft(region: str, records: Sequence[VillageRecord], period: int, *, days: int, minimum: int,
                 by_person: bool = False,
                 ordered: bool = False) -> tuple[dt.date, dt.date, tuple[str, ...], tuple[str, ...], int] | None:
    """The fixed period `period` (of `days + 1` days) of one windowed count, if a qualifying window starts in it:
    (first window start, last record date, households, events, members counted). A window starts on a record's
    date and holds the records up to `days` later; it qualifies with at least `minimum` distinct households (or
    persons). The period's evidence is every record of every qualifying window starting in it, so it does not
    depend on the order in which the records arrived.

    The records are taken in date order (`ordered`: they come so already) and the windows slid over those the
    period's windows can hold (dated from its first day to `days` after its last), each entering and leaving the
    count once: a period costs one pass over its own records, whatever the number of window starts in it or of
    records around it."""
    span = dt.timedelta(days=days)
    first = dt.date.fromordinal(max(1, period * (days + 1)))
    last = dt.date.fromordinal(period * (days + 1) + days)
    dated = records if ordered else sorted(records, key=record_date)
    near = dated[bisect_left(dated, first, key=record_date):bisect_right(dated, last + span, key=record_date)]
    size = len(near)
    counts: dict[str, int] = {}  # member -> records of the current window
    lo = hi = 0  # the current window: near[lo:hi]
    covered = 0  # near[:covered] is behind every qualifying window's slice taken so far
    inside: dict[str, VillageRecord] = {}
    opened: dt.date | None = None
    at = 0
    while at < size:
        start = near[at].disaster_date
        at += 1
        while at < size and near[at].disaster_date == start:
            at += 1  # one window per distinct date
        if start > last:
            break
        end = start + span
        while hi < size and near[hi].disaster_date <= end:
            member = _member(near[hi], by_person)
            counts[member] = counts.get(member, 0) + 1
            hi += 1
        while near[lo].disaster_date < start:
            member = _member(near[lo], by_person)
            counts[member] -= 1
            if not counts[member]:
                del counts[member]
            lo += 1
        if len(counts) >= minimum:
            opened = opened or start
            inside.update((r.event_id, r) for r in near[max(lo, covered):hi])
            covered = hi
    if opened is None:
        return None
    chosen = inside.values()
    counted = {_member(r, by_person) for r in chosen}
    return (opened, max(r.disaster_date for r in chosen), tuple(sorted({r.household_id for r in chosen})),
            tuple(sorted(inside)), len(counted))


def record_date(r: VillageRecord) -> dt.date:
    """The day a regional record counts by (the key its windows are ordered on)."""
    return r.disaster_date


def regional_disaster(
    village_code: str,
    records: Sequence[VillageRecord],
    fired: Collection[int],
    cfg: RuleConfig,
    periods: Iterable[int] | None = None,
    ordered: bool = False,
) -> list[RegionalDraft]:
    """One draft per fixed period (of `periods`, default every period holding a record) that holds the start of a
    qualifying window and has not alerted yet (`fired`).

    A window is `regional_window_days` long (latest - earliest <= window) and qualifies with at least
    `regional_min_households` distinct households. Each period alerts under an id made of the village and the
    period, with the records of every qualifying window starting in it, so the alerts raised are a function of the
    records received, not of their arrival order. A cluster whose qualifying windows start in two periods gives two
    alerts (they open one village case). `ordered`: the records come in date order already."""
    drafts: list[RegionalDraft] = []
    wanted = sorted(set(periods) if periods is not None else {regional_period(r.disaster_date, cfg) for r in records})
    for period in wanted:
        if period in fired:
            continue
        found = period_draft(village_code, records, period, days=cfg.regional_window_days,
                             minimum=cfg.regional_min_households, ordered=ordered)
        if found is None:
            continue
        start, end, households, events, _ = found
        reason = (
            f"区域性灾害风险: 村(社区){village_code}在{start:%Y-%m-%d}至{end:%Y-%m-%d}期间有{len(households)}户"
            f"监测家庭报告灾害损失(阈值{cfg.regional_min_households}户/{cfg.regional_window_days}天), 防止规模性返贫"
        )
        drafts.append(RegionalDraft(village_code, period, start, end, households, events, reason))
    return drafts
