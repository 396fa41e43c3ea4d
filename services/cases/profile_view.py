"""The household as the plan sees it, for `povwatch household show` and the desk's case page: a pure function from
the household's roster rows, its profile and its open alerts to a view model, and the view's text rendering.

    build_profile_view(household_id, household=, members=, profile=, alerts=, case_id=, income=, today=)
        -> ProfileView
    render_profile_text(view) -> str        (Chinese labels, one fact per domain)
    to_json(view)                           services.cases.views.to_json

Where each part comes from:
  * the household and its members (relation, sex, age on `today`, name): the case DB's `households` and `members`
    tables, which the bureau's roster fills - names never come from Kafka (the profile names persons by person_key
    only; a fact about a member shows the member's name and relation from the roster);
  * the facts: the latest fact per domain (收入, 就业, 健康, 教育, 住房, 饮水, 资产, 救助, 灾害, 报告, 户籍) of the
    household's profile (profiles.household, stored in `household_profiles`), each with its department's Chinese
    short name (services/casedb/departments.py), its feed's title and date, and its fields with the Chinese
    headers the connector declares for them (connectors/catalog.py: FeedSpec.columns, Column.label per Avro
    field); an enum symbol is shown as the Chinese value that maps to it in the column's Choice (connectors/
    fields.py), a sex as 男/女, anything else (dates, amounts, counts, free text) as it travels;
  * the income: services/cases/elimination.py's standing (the profile's latest income for its year, or the
    roster's as last year's, against the county's line);
  * the alerts: the case_alerts of the household's OPEN case that are not RESOLVED.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from connectors.fields import Choice, MultiChoice, Sex
from connectors.framework import Column
from services.cases.elimination import ROSTER, IncomeStanding, yuan

__all__ = ["DOMAINS", "RosterHousehold", "RosterMember", "StoredProfile", "OpenAlert", "FieldView", "FactView",
           "MemberLine", "AlertLine", "IncomeView", "ProfileView", "field_labels", "field_text", "build_profile_view",
           "render_profile_text", "age_on"]

DOMAINS: tuple[str, ...] = ("收入", "就业", "健康", "教育", "住房", "饮水", "资产", "救助", "灾害", "报告", "户籍")
# fields a fact carries that are not a column of its feed
_EXTRA_LABELS = {"ingested_on": "报送日期"}
# the intake channels' reports (events.intake.<channel>): no file connector declares them
_INTAKE_LABELS = {"channel": "渠道", "risk_type": "风险类型", "description": "情况描述", "reported_on": "报告日期",
                  "visit_result": "走访结果", "clue_source": "线索来源"}
_SEX = {"M": "男", "F": "女"}
_ALERT_STATUS = {"OPEN": "待处理", "ACKNOWLEDGED": "已确认", "RESOLVED": "已解除"}
_SEVERITY = {"HIGH": "高", "MEDIUM": "中", "LOW": "低"}
_NONE_SHOWN = "—"


# --- the inputs: plain values read from the case DB ------------------------------------------------------------
@dataclass(frozen=True)
class RosterHousehold:
    village_code: str
    category: str
    monitoring_status: str
    labour_capacity: str
    household_size: int
    per_capita_income: Decimal


@dataclass(frozen=True)
class RosterMember:
    person_key: str
    name: str
    relation: str
    sex: str
    birth_date: dt.date


@dataclass(frozen=True)
class StoredProfile:
    village_code: str
    facts: Sequence[Mapping[str, Any]]  # household_profiles.facts: day as ISO text, values by Avro field name
    income_year: int | None
    income_per_capita: Decimal | None
    updated_at: dt.datetime


@dataclass(frozen=True)
class OpenAlert:
    id: int
    case_id: int
    rule: str
    severity: str
    status: str
    opened_at: dt.datetime


# --- the view model ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldView:
    name: str  # the Avro field
    label: str  # its Chinese header (the connector's column label)
    value: str  # as the case worker reads it


@dataclass(frozen=True)
class FactView:
    domain: str
    feed: str  # the feed's Chinese title
    topic: str
    department: str  # slug
    department_name: str  # Chinese short name, e.g. 住建
    event_id: str
    day: dt.date
    person_key: str | None
    person: str | None  # "王建国 (户主)" when the person is a member of the roster's household
    fields: tuple[FieldView, ...]


@dataclass(frozen=True)
class MemberLine:
    person_key: str
    name: str
    relation: str
    sex: str  # 男 / 女
    birth_date: dt.date
    age: int


@dataclass(frozen=True)
class AlertLine:
    id: int
    case_id: int
    rule: str
    title: str  # the rule's Chinese name
    severity: str
    status: str
    status_label: str
    opened_at: dt.datetime


@dataclass(frozen=True)
class IncomeView:
    per_capita: Decimal
    year: int
    line: Decimal
    source: str  # profile (统计局 住户收入) or roster (花名册上年人均纯收入)
    below: bool
    text: str  # 人均纯收入 8200 元 (2025 年), 本县标准 9000 元: 低于标准


@dataclass(frozen=True)
class ProfileView:
    household_id: str
    village_code: str
    in_roster: bool  # the household is in the case DB's roster (members, labour capacity...)
    category: str | None
    category_label: str | None
    monitoring_status: str | None
    monitoring_label: str | None
    labour_capacity: str | None
    labour_label: str | None
    household_size: int | None
    members: tuple[MemberLine, ...]
    income: IncomeView | None
    facts: tuple[FactView, ...]  # the latest per domain, in DOMAINS order
    profile_updated_at: dt.datetime | None  # None: no profile yet (no alert, or the case feed has not read it)
    case_id: int | None  # the household's OPEN case
    alerts: tuple[AlertLine, ...]  # its alerts not resolved


# --- labels from the connector declarations --------------------------------------------------------------------
def _choice_labels(column: Column) -> dict[str, str]:
    """symbol -> the first Chinese value that maps to it, for a Choice or MultiChoice column."""
    parser = column.parser
    if not isinstance(parser, Choice | MultiChoice):
        return {}
    out: dict[str, str] = {}
    for chinese, symbol in parser.labels.items():
        out.setdefault(symbol, chinese)
    return out


@cache
def _columns(topic: str) -> dict[str, Column]:
    from connectors.catalog import EVENT_FEEDS  # loads every department module: only when a fact is shown

    for spec in EVENT_FEEDS.values():
        if spec.topic == topic:
            return {c.field: c for c in spec.columns if c.sensitive is None}
    return {}


@cache
def _intake_values() -> dict[str, dict[str, str]]:
    from services.intake.mapping import CHANNEL_SYMBOLS, CLUE_SOURCES, RISK_TYPES, VISIT_RESULTS

    titles = {"self-declaration": "农户自主申报", "cadre-visit": "基层干部排查", "social-clue": "社会信息补充"}

    def flip(labels: Mapping[str, str]) -> dict[str, str]:
        return {symbol: chinese for chinese, symbol in labels.items()}

    return {"channel": {CHANNEL_SYMBOLS[c]: t for c, t in titles.items()}, "risk_type": flip(RISK_TYPES),
            "visit_result": flip(VISIT_RESULTS), "clue_source": flip(CLUE_SOURCES)}


def field_labels(topic: str) -> dict[str, str]:
    """Avro field -> Chinese header, for the events of `topic` (the connector's column labels)."""
    if topic.startswith("events.intake."):
        return dict(_INTAKE_LABELS)
    return {name: column.label for name, column in _columns(topic).items()}


def field_text(topic: str, name: str, value: str) -> str:
    """A fact's value as the case worker reads it: an enum symbol as its Chinese value (several joined by 、),
    a sex as 男/女, anything else unchanged."""
    if topic.startswith("events.intake."):
        return _intake_values().get(name, {}).get(value, value)
    column = _columns(topic).get(name)
    if column is None:
        return value
    if isinstance(column.parser, Sex):
        return _SEX.get(value, value)
    labels = _choice_labels(column)
    if not labels:
        return value
    if isinstance(column.parser, MultiChoice):
        return "、".join(labels.get(part, part) for part in value.split("、"))
    return labels.get(value, value)


@cache
def _roster_labels() -> dict[str, dict[str, str]]:
    from connectors.catalog import ROSTER

    return {c.field: _choice_labels(c) for c in ROSTER.columns if c.field in
            ("category", "monitoring_status", "labour_capacity")}


def _rule_title(rule: str) -> str:
    from schemas.alerts import Rule
    from services.monitor.ruledocs import RULE_DOCS

    try:
        return RULE_DOCS[Rule(rule)].title
    except (ValueError, KeyError):
        return rule


# --- the pure function ---------------------------------------------------------------------------------------
def age_on(birth: dt.date, today: dt.date) -> int:
    """Full years on `today`."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _fields(topic: str, values: Mapping[str, Any]) -> tuple[FieldView, ...]:
    labels = field_labels(topic)
    order = [name for name in labels if name in values]
    order += sorted(name for name in values if name not in labels)
    return tuple(FieldView(name, labels.get(name) or _EXTRA_LABELS.get(name, name),
                           field_text(topic, name, str(values[name]))) for name in order)


def _fact(fact: Mapping[str, Any], members: Mapping[str, RosterMember]) -> FactView:
    from services.casedb.departments import source_label

    topic, department = str(fact.get("topic") or ""), str(fact.get("department") or "")
    person_key = fact.get("person_key") or None
    member = members.get(person_key) if person_key else None
    day = fact.get("day")
    return FactView(
        domain=str(fact.get("domain") or ""), feed=str(fact.get("feed") or ""), topic=topic, department=department,
        department_name=source_label(department or None, topic or None), event_id=str(fact.get("event_id") or ""),
        day=day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)),
        person_key=person_key, person=f"{member.name} ({member.relation})" if member else None,
        fields=_fields(topic, fact.get("values") or {}))


def _domain_rank(domain: str) -> tuple[int, str]:
    return (DOMAINS.index(domain), "") if domain in DOMAINS else (len(DOMAINS), domain)


def _income(income: IncomeStanding | None) -> IncomeView | None:
    if income is None:
        return None
    source = "花名册上年人均纯收入" if income.source == ROSTER else "统计局住户收入"
    verdict = "低于标准" if income.below else "不低于标准"
    return IncomeView(per_capita=income.per_capita, year=income.year, line=income.line, source=income.source,
                      below=income.below,
                      text=f"人均纯收入 {yuan(income.per_capita)} 元 ({income.year} 年, {source}), "
                           f"本县标准 {yuan(income.line)} 元: {verdict}")


def build_profile_view(household_id: str, *, household: RosterHousehold | None, members: Sequence[RosterMember],
                       profile: StoredProfile | None, alerts: Sequence[OpenAlert], case_id: int | None,
                       income: IncomeStanding | None, today: dt.date) -> ProfileView:
    """The view model of one household (see the module docstring). Pure."""
    roster = _roster_labels() if household is not None else {}
    by_key = {m.person_key: m for m in members}
    facts = sorted((_fact(f, by_key) for f in (profile.facts if profile else ())),
                   key=lambda f: (_domain_rank(f.domain), f.day, f.event_id))
    ordered = sorted(members, key=lambda m: (m.relation != "户主", m.birth_date, m.person_key))
    village = household.village_code if household is not None else (profile.village_code if profile else "")

    def label(name: str, value: str | None) -> str | None:
        return roster.get(name, {}).get(value, value) if value is not None else None

    return ProfileView(
        household_id=household_id, village_code=village, in_roster=household is not None,
        category=household.category if household else None,
        category_label=label("category", household.category if household else None),
        monitoring_status=household.monitoring_status if household else None,
        monitoring_label=label("monitoring_status", household.monitoring_status if household else None),
        labour_capacity=household.labour_capacity if household else None,
        labour_label=label("labour_capacity", household.labour_capacity if household else None),
        household_size=household.household_size if household else None,
        members=tuple(MemberLine(person_key=m.person_key, name=m.name, relation=m.relation,
                                 sex=_SEX.get(m.sex, m.sex), birth_date=m.birth_date, age=age_on(m.birth_date, today))
                      for m in ordered),
        income=_income(income),
        facts=tuple(facts),
        profile_updated_at=profile.updated_at if profile else None,
        case_id=case_id,
        alerts=tuple(AlertLine(id=a.id, case_id=a.case_id, rule=a.rule, title=_rule_title(a.rule),
                               severity=a.severity, status=a.status,
                               status_label=_ALERT_STATUS.get(a.status, a.status), opened_at=a.opened_at)
                     for a in sorted(alerts, key=lambda a: a.id) if a.status != "RESOLVED"))


# --- text ----------------------------------------------------------------------------------------------------
def render_profile_text(view: ProfileView) -> str:
    """`povwatch household show`: the household, its members, income, latest facts per domain and open alerts."""
    head = f"户 {view.household_id}  村 {view.village_code}"
    if view.in_roster:
        head += (f"  {view.monitoring_label} · {view.category_label} · {view.labour_label} · "
                 f"{view.household_size} 人")
    else:
        head += "  (不在案件库花名册中)"
    lines = [head]
    if view.income is not None:
        lines.append(f"收入: {view.income.text}")
    lines.append("家庭成员:")
    if view.members:
        lines += [f"  {m.relation}  {m.name}  {m.sex}  {m.age} 岁" for m in view.members]
    else:
        lines.append(f"  {_NONE_SHOWN}")
    updated = f" (画像更新于 {view.profile_updated_at:%Y-%m-%d %H:%M} UTC)" if view.profile_updated_at else ""
    lines.append(f"最新情况 (按领域){updated}:")
    if not view.facts:
        lines.append("  (尚无画像: 该户没有预警, 或案件同步尚未收到)")
    for f in view.facts:
        lines.append(f"  {f.domain}  {f.day}  {f.department_name} · {f.feed}" + (f"  {f.person}" if f.person else ""))
        if f.fields:
            lines.append("        " + "; ".join(f"{fv.label} {fv.value}" for fv in f.fields))
    lines.append(f"未解除预警 (案件 {view.case_id}):" if view.case_id is not None else "未解除预警: 无在办案件")
    for a in view.alerts:
        lines.append(f"  预警 {a.id}  {a.rule} {a.title}  {_SEVERITY.get(a.severity, a.severity)}  {a.status_label}  "
                     f"{a.opened_at:%Y-%m-%d}")
    if view.case_id is not None and not view.alerts:
        lines.append(f"  {_NONE_SHOWN}")
    return "\n".join(lines)
