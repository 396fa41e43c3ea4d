"""What the desk's pages ask and show, as plain values: the worklist's filters, a step's form (which fields it
has, and its parsed input), and the Chinese labels. No I/O, no web framework: unit-tested on its own.

Bad input is a `FormError` with one line, shown on the page (400); it never reaches the store.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.alerts import Rule, Severity
from services.cases.store import FOCUS_CATEGORIES, RESOLVER_ROLES
from services.cases.workflow import ROLE_LABELS, STEP_LABELS, Role, Step

__all__ = ["FormError", "Filters", "parse_filters", "StepInput", "StepFields", "fields_for", "parse_step",
           "override_possible",
           "RULE_LABELS", "SEVERITY_LABELS", "STATUS_LABELS", "ALERT_STATUS_LABELS", "MONITORING_LABELS",
           "CATEGORY_LABELS", "FOCUS_CATEGORIES", "RESOLVER_ROLES",
           "step_label", "role_label", "NOTE_MAX", "REASON_MAX"]

NOTE_MAX = 2000
REASON_MAX = 500

RULE_LABELS: dict[str, str] = {  # every rule of schemas.alerts.Rule (a unit test keeps them complete)
    Rule.DEATH_IN_HOUSEHOLD: "家庭成员死亡", Rule.MEDICAL_EXPENSE: "医疗支出", Rule.DISASTER_LOSS: "灾害损失",
    Rule.SCHOOL_DROPOUT: "义务教育辍学", Rule.ASSET_PURCHASE: "资产购置", Rule.INCOME_BELOW_LINE: "收入低于监测线",
    Rule.INCOME_DROP: "收入大幅下降", Rule.JOB_LOSS: "务工失业", Rule.HOUSING_UNSAFE: "住房不安全",
    Rule.WATER_UNSAFE: "饮水不安全", Rule.ACCIDENT_INJURY: "意外伤害", Rule.SERIOUS_ILLNESS: "大病",
    Rule.CHRONIC_DISEASE: "重点慢病", Rule.SEVERE_DISABILITY: "重度残疾", Rule.SAFETY_NET: "兜底保障变动",
    Rule.INSURANCE_GAP: "未参加医保", Rule.LOAN_OVERDUE: "小额信贷逾期", Rule.REPORTED_RISK: "报告风险",
    Rule.REGIONAL_DISASTER: "区域性灾害", Rule.REGIONAL_WATER: "区域饮水问题", Rule.REGIONAL_RETURNS: "集中返乡",
    Rule.REGIONAL_ILLNESS: "区域性疾病", Rule.REGIONAL_RISK_CLUSTER: "高风险户聚集",
    Rule.COLLECTIVE_INCOME_DROP: "村集体收入下降",
}
SEVERITY_LABELS: dict[str, str] = {Severity.HIGH: "高", Severity.MEDIUM: "中", Severity.LOW: "低"}
STATUS_LABELS: dict[str, str] = {"OPEN": "办理中", "CLOSED": "已结案"}
ALERT_STATUS_LABELS: dict[str, str] = {"OPEN": "待处理", "ACKNOWLEDGED": "已确认", "RESOLVED": "已解除"}
CATEGORY_LABELS: dict[str, str] = {"UNSTABLE_LIFTED": "脱贫不稳定户", "MARGINAL": "边缘易致贫户",
                                   "SUDDEN_HARDSHIP": "突发严重困难户", "LIFTED": "脱贫户", "ORDINARY": "一般农户"}
MONITORING_LABELS: dict[str, str] = {"NOT_INCLUDED": "未纳入监测", "MONITORING": "监测中",
                                     "RISK_ELIMINATED": "风险已消除"}

_COUNTY = re.compile(r"[0-9]{6}")
_TOWNSHIP = re.compile(r"[0-9]{9}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class FormError(ValueError):
    """A value the user typed that cannot be used: one line, in the user's terms."""


def step_label(step: str | None) -> str:
    """申请 (APPLY); 尚无步骤 for none."""
    if not step:
        return "尚无步骤"
    try:
        return f"{STEP_LABELS[Step(step)]}"
    except ValueError:
        return step


def role_label(role: str) -> str:
    try:
        return ROLE_LABELS[Role(role)]
    except ValueError:
        return role


@dataclass(frozen=True)
class Filters:
    county: str | None = None
    township: str | None = None
    rule: str | None = None
    severity: str | None = None
    step: str | None = None  # a Step's name, or "NONE" for cases with no step yet

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in (("county", self.county), ("township", self.township), ("rule", self.rule),
                                  ("severity", self.severity), ("step", self.step)) if v}


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def parse_filters(query: Mapping[str, str]) -> Filters:
    """The worklist's GET parameters; empty ones mean "any". FormError for a value that cannot match anything."""
    county, township = _blank(query.get("county")), _blank(query.get("township"))
    rule, severity, step = _blank(query.get("rule")), _blank(query.get("severity")), _blank(query.get("step"))
    if county is not None and not _COUNTY.fullmatch(county):
        raise FormError(f"县 (county) 须为6位行政区划代码, 不是 {county!r}")
    if township is not None and not _TOWNSHIP.fullmatch(township):
        raise FormError(f"乡镇 (township) 须为9位行政区划代码, 不是 {township!r}")
    if rule is not None and rule not in RULE_LABELS:
        raise FormError(f"未知的预警规则 {rule!r} (可选: {', '.join(RULE_LABELS)})")
    if severity is not None and severity not in SEVERITY_LABELS:
        raise FormError(f"未知的风险等级 {severity!r} (可选: {', '.join(SEVERITY_LABELS)})")
    if step is not None and step != "NONE" and step not in Step.__members__:
        raise FormError(f"未知的步骤 {step!r} (可选: NONE, {', '.join(Step.__members__)})")
    return Filters(county=county, township=township, rule=rule, severity=severity, step=step)


@dataclass(frozen=True)
class StepFields:
    """Which fields a step's form has besides the day it happened and a note (every step has those)."""

    authorised: bool  # APPLY: the household's signed authorisation is on file
    override: bool  # DATA_COMPARE by a county user: complete it without every comparison answer, with a reason
    category: bool  # LABEL: the focus category the household is labelled with (empty: the store decides)


def fields_for(step: Step, role: Role) -> StepFields:
    return StepFields(authorised=step == Step.APPLY,
                      override=step == Step.DATA_COMPARE and role == Role.COUNTY,
                      category=step == Step.LABEL)


def override_possible(step: Step, role: Role, *, refused: bool, authorised: bool, unanswered: int) -> bool:
    """Is a refused DATA_COMPARE one that this user may complete with an override reason? (The table refuses it
    while a requested department has not answered; a county user may complete it anyway, saying why - provided
    the signed authorisation is on file, which no override replaces.)"""
    return step == Step.DATA_COMPARE and role == Role.COUNTY and refused and authorised and unanswered > 0


@dataclass(frozen=True)
class StepInput:
    step: Step
    on: dt.date
    note: str | None
    authorised: bool
    override: str | None
    category: str | None = None


def parse_step(step_name: str, form: Mapping[str, str], *, today: dt.date) -> StepInput:
    """A posted step form -> the store's arguments. FormError for an unknown step, a date that is not a real
    day or lies in the future, an over-long note or reason, an unknown category."""
    try:
        step = Step(step_name)
    except ValueError:
        raise FormError(f"未知的步骤 {step_name!r}") from None
    raw_on = (form.get("on") or "").strip()
    if not raw_on:
        on = today
    else:
        if not _DATE.fullmatch(raw_on):
            raise FormError(f"办理日期须为 YYYY-MM-DD, 不是 {raw_on!r}")
        try:
            on = dt.date.fromisoformat(raw_on)
        except ValueError:
            raise FormError(f"办理日期 {raw_on} 不是有效日期") from None
        if on > today:
            raise FormError(f"办理日期 {on} 在今天 ({today}) 之后")
    note = _blank(form.get("note"))
    if note is not None and len(note) > NOTE_MAX:
        raise FormError(f"备注过长 ({len(note)} 字, 最多 {NOTE_MAX} 字)")
    override = _blank(form.get("override"))
    if override is not None and len(override) > REASON_MAX:
        raise FormError(f"未全部反馈即完成比对的理由过长 ({len(override)} 字, 最多 {REASON_MAX} 字)")
    authorised = (form.get("authorised") or "").strip().lower() in ("1", "on", "true", "yes")
    category = _blank(form.get("category"))
    if category is not None and category not in FOCUS_CATEGORIES:
        raise FormError(f"未知的监测类别 {category!r} (可选: {', '.join(FOCUS_CATEGORIES)})")
    return StepInput(step=step, on=on, note=note, authorised=authorised, override=override, category=category)
