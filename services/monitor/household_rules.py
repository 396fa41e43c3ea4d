"""The household rules of the risk model: one pure function per rule, `(event, Context) -> Verdict`, and the
dispatch that runs a feed's rules (`judge`) or a timer that came due (`fire`).

A rule sees the event (the decoded Avro record), the household, the member it names (None for an intake report
naming only the household), the household's earlier facts, today's date in the prefecture and the thresholds.
"One fact, one alert": a rule whose fact several departments report (a death, a dropout) finds the earlier reports
among the facts and raises the same alert (same id) with all of them as evidence. docs/rules.md has every rule.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from schemas.alerts import Rule, Severity
from schemas.topics import event_topic
from services.monitor.rules import (
    DAMAGE_LABEL,
    AlertDraft,
    Context,
    Fact,
    Timer,
    Verdict,
    age_at,
    as_fact,
    disaster_loss,
    format_cny,
    medical_expense,
    percent,
    school_year,
)

__all__ = ["EVENT_RULES", "TIMER_RULES", "judge", "fire", "death_report"]

REGISTRATION = event_topic("public-security", "registration-change")
TRAFFIC = event_topic("public-security", "traffic-accident")
CHRONIC = event_topic("health", "chronic-disease")
DROPOUT = event_topic("education", "dropout")
STUDENT_ROLL = event_topic("education", "student-roll")
EMPLOYMENT = event_topic("hrss", "employment")
WATER = event_topic("water", "drinking-water")
INCOME = event_topic("statistics", "household-income")
INTAKE_CHANNEL = {"SELF_DECLARATION": "农户自主申报", "CADRE_SCREENING": "基层干部排查", "SOCIAL_CLUE": "社会信息补充"}
RISK_TYPE = {"ILLNESS": "因病", "DISASTER": "因灾", "EDUCATION": "因学", "DISABILITY": "因残", "ACCIDENT": "因意外",
             "EMPLOYMENT": "就业", "HOUSING": "住房", "DRINKING_WATER": "饮水", "OTHER": "其他"}
STAGE = {"PRESCHOOL": "学前", "PRIMARY": "小学", "JUNIOR": "初中", "SENIOR": "高中", "VOCATIONAL": "中职",
         "HIGHER_VOCATIONAL": "高职", "UNDERGRADUATE": "本科"}
COMPULSORY = ("PRIMARY", "JUNIOR")


def _draft(rule: Rule, severity: Severity, ctx: Context, reason: str, event_ids: Iterable[str], day: dt.date,
           fact: str | None) -> AlertDraft:
    return AlertDraft(rule, severity, ctx.household.household_id, ctx.household.village_code, reason,
                      tuple(sorted(set(event_ids))), day, fact)


def _one(draft: AlertDraft | None) -> Verdict:
    return Verdict([draft] if draft is not None else [])


def _who(ctx: Context) -> str:
    return f"家庭成员({ctx.person.relation})" if ctx.person is not None else "家庭成员"


def _working(ctx: Context, on: dt.date) -> tuple[int | None, bool]:
    if ctx.person is None:
        return None, False
    age = age_at(ctx.person.birth_date, on)
    return age, ctx.cfg.death_working_age_min <= age <= ctx.cfg.death_working_age_max


def _span(ctx: Context) -> str:
    return f"{ctx.cfg.death_working_age_min}-{ctx.cfg.death_working_age_max}岁"


def _same_person(ctx: Context, this: Fact, test: Callable[[Fact], bool]) -> list[Fact]:
    """`this` and the household's earlier facts about the same person that pass `test`, once each, by date."""
    person = ctx.person.person_key if ctx.person is not None else this.person_key
    found = {f.event_id: f for f in ctx.facts if f.person_key == person and test(f)}
    found[this.event_id] = this
    return sorted(found.values(), key=lambda f: (f.day, f.event_id))


# --- DEATH_IN_HOUSEHOLD ----------------------------------------------------------------------------------------


def death_report(f: Fact) -> tuple[str, dt.date] | None:
    """(what the department reported, the date of death it gives) when `f` reports a death, else None. The
    chronic-disease roll gives no date of death: the day health reported it stands in."""
    if f.topic == REGISTRATION and f.get("change_type") in ("DEATH", "CANCELLED"):
        label = "死亡" if f.get("change_type") == "DEATH" else "注销"
        return f"公安户籍变动: {label}", f.date("change_date") or f.day
    if f.topic == TRAFFIC and f.get("casualty") == "DEATH":
        return "公安交通事故: 死亡", f.date("accident_date") or f.day
    if f.topic == CHRONIC and f.get("management_status") == "DECEASED":
        return "卫健慢病管理: 死亡", f.date("ingested_on") or f.day
    return None


def death_in_household(event: Mapping[str, Any], ctx: Context) -> Verdict:
    this = as_fact(ctx.topic, event)
    if ctx.person is None or death_report(this) is None:
        return Verdict()
    reports = _same_person(ctx, this, lambda f: death_report(f) is not None)
    dated = [(death_report(f), f) for f in reports]
    died = min(d[1] for d, _ in dated)  # type: ignore[index]
    age, working = _working(ctx, died)
    severity = Severity.HIGH if working else Severity.MEDIUM
    told = "; ".join(f"{d[0]}({d[1]:%Y-%m-%d})" for d, _ in dated)  # type: ignore[index]
    reason = (f"{_who(ctx)}死亡, 死亡日期{died:%Y-%m-%d}, 时年{age}岁"
              + (f", 属劳动年龄({_span(ctx)}), 家庭失去劳动力" if working else f", 不在劳动年龄({_span(ctx)})")
              + f"; 报告: {told}")
    return _one(_draft(Rule.DEATH_IN_HOUSEHOLD, severity, ctx, reason, (f.event_id for f in reports), died,
                       ctx.person.person_key))


# --- MEDICAL_EXPENSE, DISASTER_LOSS ------------------------------------------------------------------------------


def _medical(event: Mapping[str, Any], ctx: Context) -> Verdict:
    if ctx.person is None:
        return Verdict()
    drafts, stays = medical_expense(event, ctx.person, ctx.household, ctx.stays, ctx.cfg)
    return Verdict(drafts, stays)


_FARM_DISASTER = {"DROUGHT": "干旱", "FLOOD": "洪涝", "HAIL": "冰雹", "FROST": "低温冻害", "WIND": "风灾",
                  "PESTS": "病虫害", "ANIMAL_DISEASE": "动物疫病", "OTHER": "其他"}


def disaster(event: Mapping[str, Any], ctx: Context) -> Verdict:
    """disaster-loss as before; farm-disaster naming a household: HIGH when the loss reaches the share of the
    household's annual net income, else MEDIUM."""
    if "house_damage" in event:
        return _one(disaster_loss(event, ctx.household, ctx.cfg))
    loss: Decimal = event["direct_loss"]
    income = ctx.household.annual_income
    grave = loss >= income * ctx.cfg.disaster_income_share
    reason = (f"农业灾情({_FARM_DISASTER.get(event['disaster_type'], event['disaster_type'])}, "
              f"{event['disaster_date']:%Y-%m-%d}): 受灾{event['affected']}, 受灾面积{event['affected_area']}亩, "
              f"绝收{event['lost_area']}亩, 死亡牲畜{event['livestock_deaths']}头只, 直接经济损失{format_cny(loss)}, "
              f"占家庭年纯收入{format_cny(income)}的{percent(loss, income)}"
              + (f", 达到{percent(ctx.cfg.disaster_income_share, Decimal(1))}" if grave else ""))
    return _one(_draft(Rule.DISASTER_LOSS, Severity.HIGH if grave else Severity.MEDIUM, ctx, reason,
                       (event["event_id"],), event["disaster_date"], None))


# --- SCHOOL_DROPOUT ----------------------------------------------------------------------------------------------


def _dropout_of(f: Fact) -> tuple[str, dt.date] | None:
    """(stage, date) when `f` reports a compulsory-education dropout."""
    if f.topic == DROPOUT and f.get("stage") in COMPULSORY:
        return f.get("stage") or "", f.date("dropout_date") or f.day
    if f.topic == STUDENT_ROLL and f.get("status") == "DROPPED_OUT" and f.get("stage") in COMPULSORY:
        return f.get("stage") or "", f.date("status_date") or f.day
    return None


def school_dropout(event: Mapping[str, Any], ctx: Context) -> Verdict:
    this = as_fact(ctx.topic, event)
    mine = _dropout_of(this)
    if mine is None or ctx.person is None:
        return Verdict()
    year = school_year(mine[1])
    reports = _same_person(ctx, this, lambda f: (d := _dropout_of(f)) is not None and school_year(d[1]) == year)
    first = min(_dropout_of(f)[1] for f in reports)  # type: ignore[index]
    age = age_at(ctx.person.birth_date, first)
    sources = "、".join(dict.fromkeys("教育辍学登记" if f.topic == DROPOUT else "在校生学籍" for f in reports))
    reason = (f"义务教育阶段辍学: {STAGE[mine[0]]}{this.get('grade') or ''}, {this.get('school') or ''}, "
              f"辍学日期{first:%Y-%m-%d}({year}-{year + 1}学年), 学生{age}岁({ctx.person.relation}); 报告: {sources}")
    return _one(_draft(Rule.SCHOOL_DROPOUT, Severity.HIGH, ctx, reason, (f.event_id for f in reports), first,
                       f"{ctx.person.person_key}|{year}"))


# --- ASSET_PURCHASE ----------------------------------------------------------------------------------------------


def _asset(event: Mapping[str, Any], ctx: Context) -> str | None:
    """What the member acquired, in Chinese, when it counts as an asset purchase; else None (the vehicle,
    housing, machinery, business and deposit feeds)."""
    cfg = ctx.cfg
    if "vehicle_type" in event:
        price = event.get("price")
        return (f"购买车辆: {event['vehicle_type']} {event['model']}, 购买日期{event['purchase_date']:%Y-%m-%d}"
                + (f", 购车价格{format_cny(price)}" if price is not None else ""))
    if "property_type" in event:
        kinds = {"NEW_HOUSING": "商品住房", "SECOND_HAND_HOUSING": "二手住房", "SHOP": "商铺"}
        if event["property_type"] not in kinds:
            return None
        return (f"登记{kinds[event['property_type']]}: 建筑面积{event['floor_area']}平方米, "
                f"登记日期{event['registration_date']:%Y-%m-%d}")
    if "machine_type" in event:
        net = event["purchase_price"] - event["subsidy"]
        if net < cfg.machinery_net_price:
            return None
        return (f"购置农机: {event['model']}, 购买金额{format_cny(event['purchase_price'])}, 补贴"
                f"{format_cny(event['subsidy'])}, 自付{format_cny(net)}(达到{format_cny(cfg.machinery_net_price)})")
    if "entity_type" in event:
        if event["entity_type"] != "LIMITED_COMPANY" or event["member_role"] != "LEGAL_REPRESENTATIVE":
            return None
        return (f"任有限责任公司法定代表人: {event['entity_name']}, 出资额{format_cny(event['capital_contribution'])}, "
                f"注册日期{event['registration_date']:%Y-%m-%d}")
    if "deposit_balance" in event:
        income = ctx.household.annual_income
        if event["deposit_balance"] <= 0 or event["deposit_balance"] < income * cfg.deposit_income_share:
            return None
        return (f"存款余额{format_cny(event['deposit_balance'])}, 达到家庭年纯收入{format_cny(income)}的"
                f"{percent(cfg.deposit_income_share, Decimal(1))}(比对日期{event['comparison_date']:%Y-%m-%d})")
    return None


def asset_purchase(event: Mapping[str, Any], ctx: Context) -> Verdict:
    if ctx.household.monitoring_status != "MONITORING":
        return Verdict()
    what = _asset(event, ctx)
    if what is None:
        return Verdict()
    reason = f"监测中{_who(ctx)}{what}; 请在数据比对环节核查家庭资产"
    day = next(event[k] for k in ("purchase_date", "registration_date", "comparison_date", "occurred_at")
               if event.get(k) is not None)
    return _one(_draft(Rule.ASSET_PURCHASE, Severity.LOW, ctx, reason, (event["event_id"],), day, None))


# --- INCOME_BELOW_LINE, INCOME_DROP ------------------------------------------------------------------------------


def _incomes(ctx: Context, this: Fact) -> dict[int, Fact]:
    """The household's income rows by 年度 (a later-received row of the same year replaces an earlier one)."""
    by_year: dict[int, Fact] = {}
    for f in [*ctx.facts, this]:
        if f.topic == INCOME and f.get("year"):
            by_year[int(f.get("year") or 0)] = f
    return by_year


_STATUS = {"NOT_INCLUDED": "未纳入监测", "MONITORING": "监测中", "RISK_ELIMINATED": "已风险消除"}


def _line(ctx: Context, year: int) -> Decimal:
    return ctx.cfg.income_lines.line(ctx.household.village_code[:6], year)


def _drop(ctx: Context, year: int, rows: Mapping[int, Fact]) -> AlertDraft | None:
    """INCOME_DROP for `year` when it is not below the line but below the share of the year before."""
    now, before = rows.get(year), rows.get(year - 1)
    if now is None or before is None:
        return None
    income, previous = now.amount("per_capita_net_income"), before.amount("per_capita_net_income")
    if income is None or previous is None or income < _line(ctx, year) or previous <= 0:
        return None
    if income >= previous * ctx.cfg.income_drop_share:
        return None
    reason = (f"人均纯收入{format_cny(income)}({year}年), 较上年{format_cny(previous)}下降"
              f"{percent(previous - income, previous)}, 低于上年的{percent(ctx.cfg.income_drop_share, Decimal(1))}")
    return _draft(Rule.INCOME_DROP, Severity.MEDIUM, ctx, reason, (now.event_id, before.event_id), now.day,
                  str(year))


def income(event: Mapping[str, Any], ctx: Context) -> Verdict:
    """INCOME_BELOW_LINE for the row's 年度; INCOME_DROP for it and for the next 年度 when that came first."""
    this = as_fact(ctx.topic, event)
    year = int(event["year"])
    rows = _incomes(ctx, this)
    out = Verdict()
    value: Decimal = event["per_capita_net_income"]
    line = _line(ctx, year)
    if value < line:
        status = ctx.household.monitoring_status
        severity = Severity.MEDIUM if status == "MONITORING" else Severity.HIGH
        label = _STATUS.get(status, status)
        reason = (f"人均纯收入{format_cny(value)}, 低于{year}年本县({ctx.household.village_code[:6]})标准"
                  f"{format_cny(line)}; 家庭{label}(家庭纯收入{format_cny(event['net_income'])}, "
                  f"{event['household_size']}人)")
        out.drafts.append(_draft(Rule.INCOME_BELOW_LINE, severity, ctx, reason, (this.event_id,), this.day,
                                 str(year)))
    for judged in (year, year + 1):
        draft = _drop(ctx, judged, rows)
        if draft is not None:
            out.drafts.append(draft)
    return out


# --- JOB_LOSS ----------------------------------------------------------------------------------------------------


def _new_job(ctx: Context, person: str | None, ended: dt.date, exclude: str) -> Fact | None:
    """An employment row of `person` starting within the gap after `ended`."""
    until = ended + dt.timedelta(days=ctx.cfg.job_gap_days)
    for f in ctx.facts:
        start = f.date("start_date") if f.topic == EMPLOYMENT and f.person_key == person else None
        if start is not None and f.event_id != exclude and ended <= start <= until:
            return f
    return None


def _job_loss_draft(ctx: Context, fact: str, ended: dt.date, event_id: str, employer: str) -> AlertDraft:
    reason = (f"{_who(ctx)}务工结束({employer}, {ended:%Y-%m-%d})后{ctx.cfg.job_gap_days}天内未再就业, "
              "家庭可能失去工资性收入")
    return _draft(Rule.JOB_LOSS, Severity.MEDIUM, ctx, reason, (event_id,), ended, fact)


def job_loss(event: Mapping[str, Any], ctx: Context) -> Verdict:
    out = Verdict()
    person = event["person_key"]
    start: dt.date = event["start_date"]
    # a new job cancels the timers of the person's earlier ends it follows within the gap
    out.cancel += [(Rule.JOB_LOSS.value, f"{person}|{d.isoformat()}") for d in _ends(ctx, person)
                   if d <= start <= d + dt.timedelta(days=ctx.cfg.job_gap_days)]
    ended: dt.date | None = event.get("end_date")
    if ended is None:
        return out
    fact = f"{person}|{ended.isoformat()}"
    due = ended + dt.timedelta(days=ctx.cfg.job_gap_days)
    if _new_job(ctx, person, ended, event["event_id"]) is not None:
        return out
    if ctx.today >= due:
        out.drafts.append(_job_loss_draft(ctx, fact, ended, event["event_id"], event["employer"]))
    else:
        out.timers.append(Timer(Rule.JOB_LOSS.value, fact, due, ended, event["event_id"], person))
    return out


def _ends(ctx: Context, person: str) -> list[dt.date]:
    return [d for f in ctx.facts if f.topic == EMPLOYMENT and f.person_key == person
            and (d := f.date("end_date")) is not None]


def _fire_job_loss(timer: Timer, ctx: Context) -> Verdict:
    if _new_job(ctx, timer.person_key, timer.ref, timer.event_id) is not None:
        return Verdict()
    employer = next((f.get("employer") or "" for f in ctx.facts if f.event_id == timer.event_id), "")
    return _one(_job_loss_draft(ctx, timer.fact, timer.ref, timer.event_id, employer))


# --- HOUSING_UNSAFE ----------------------------------------------------------------------------------------------


def housing_unsafe(event: Mapping[str, Any], ctx: Context) -> Verdict:
    if event["cause"] == "RENOVATION_COMPLETED":
        return Verdict()
    grade, damage = event["safety_grade"], event["damage"]
    if grade == "D" or damage == "COLLAPSED":
        severity = Severity.HIGH
    elif grade == "C" or damage == "SERIOUS":
        severity = Severity.MEDIUM
    else:
        return Verdict()
    causes = {"NATURAL_DISASTER": "自然灾害", "ASSESSMENT": "鉴定", "OTHER": "其他"}
    reason = (f"住房安全: 鉴定等级{grade}级, 损毁程度{DAMAGE_LABEL.get(damage, damage)}"
              f"(事由: {causes.get(event['cause'], event['cause'])}, {event['event_date']:%Y-%m-%d}), 住房安全无保障")
    return _one(_draft(Rule.HOUSING_UNSAFE, severity, ctx, reason, (event["event_id"],), event["event_date"], None))


# --- WATER_UNSAFE ------------------------------------------------------------------------------------------------

_INDICATOR = {"QUANTITY": "水量", "QUALITY": "水质", "CONVENIENCE": "用水方便程度", "SUPPLY_RATE": "供水保证率"}


def water_problem(event: Mapping[str, Any]) -> str:
    return "、".join(_INDICATOR.get(i, i) for i in event["indicators"])


def _water_resolved(facts: Iterable[Fact], found: dt.date, person: str | None) -> bool:
    return any(f.topic == WATER and f.person_key == person and f.date("found_date") == found
               and f.get("resolved_date") for f in facts)


def water_unsafe(event: Mapping[str, Any], ctx: Context) -> Verdict:
    found: dt.date = event["found_date"]
    fact = found.isoformat()
    if event.get("resolved_date") is not None:
        return Verdict(cancel=[(Rule.WATER_UNSAFE.value, fact)])
    if _water_resolved(ctx.facts, found, event.get("person_key")):
        return Verdict()
    due = found + dt.timedelta(days=ctx.cfg.water_unsolved_days)
    out = Verdict()
    late = ctx.today >= due
    out.drafts.append(_water_draft(ctx, fact, found, event["event_id"], water_problem(event), late))
    if not late:
        out.timers.append(Timer(Rule.WATER_UNSAFE.value, fact, due, found, event["event_id"],
                                event.get("person_key")))
    return out


def _water_draft(ctx: Context, fact: str, found: dt.date, event_id: str, problem: str, late: bool) -> AlertDraft:
    reason = f"饮水安全问题({problem}), 发现日期{found:%Y-%m-%d}, 尚未解决"
    if late:
        reason += f", 已超过{ctx.cfg.water_unsolved_days}天"
    return _draft(Rule.WATER_UNSAFE, Severity.HIGH if late else Severity.MEDIUM, ctx, reason, (event_id,), found,
                  fact)


def _fire_water(timer: Timer, ctx: Context) -> Verdict:
    if _water_resolved(ctx.facts, timer.ref, timer.person_key):
        return Verdict()
    setter = next((f for f in ctx.facts if f.event_id == timer.event_id), None)
    problem = "、".join(_INDICATOR.get(i, i) for i in (setter.get("indicators") or "").split("、")) if setter else ""
    return _one(_water_draft(ctx, timer.fact, timer.ref, timer.event_id, problem, True))


# --- ACCIDENT_INJURY, SERIOUS_ILLNESS, CHRONIC_DISEASE, SEVERE_DISABILITY ---------------------------------------


def accident_injury(event: Mapping[str, Any], ctx: Context) -> Verdict:
    if event["casualty"] != "SERIOUS_INJURY":
        return Verdict()
    day: dt.date = event["accident_date"]
    age, working = _working(ctx, day)
    reason = (f"{_who(ctx)}交通事故重伤({day:%Y-%m-%d}), 时年{age}岁"
              + (f", 属劳动年龄({_span(ctx)}), 家庭劳动力受损" if working else f", 不在劳动年龄({_span(ctx)})"))
    return _one(_draft(Rule.ACCIDENT_INJURY, Severity.HIGH if working else Severity.MEDIUM, ctx, reason,
                       (event["event_id"],), day, None))


def serious_illness(event: Mapping[str, Any], ctx: Context) -> Verdict:
    status = event["treatment_status"]
    if status == "TREATED":
        return Verdict()
    severity = Severity.HIGH if status == "ABANDONED" else Severity.MEDIUM
    label = "放弃救治" if status == "ABANDONED" else "救治中"
    reason = (f"{_who(ctx)}患大病({event['disease']}), {event['hospital']}, 救治开始"
              f"{event['treatment_start_date']:%Y-%m-%d}, {label}")
    fact = f"{event['person_key']}|{event['disease']}|{event['treatment_start_date'].isoformat()}"
    return _one(_draft(Rule.SERIOUS_ILLNESS, severity, ctx, reason, (event["event_id"],),
                       event["treatment_start_date"], fact))


_CHRONIC = {"HYPERTENSION": "高血压", "DIABETES": "糖尿病", "TUBERCULOSIS": "结核病",
            "SEVERE_MENTAL_DISORDER": "严重精神障碍"}


def chronic_disease(event: Mapping[str, Any], ctx: Context) -> Verdict:
    disease, status = event["disease"], event["management_status"]
    if status == "MANAGED" and disease in ("TUBERCULOSIS", "SEVERE_MENTAL_DISORDER"):
        severity, what, kind = Severity.MEDIUM, "在管", "managed"
    elif status == "LOST_TO_FOLLOW_UP":
        severity, what, kind = Severity.LOW, "失访", "lost"
    else:
        return Verdict()
    reason = f"{_who(ctx)}患{_CHRONIC.get(disease, disease)}(确诊{event['diagnosis_date']:%Y-%m-%d}), 管理状态: {what}"
    return _one(_draft(Rule.CHRONIC_DISEASE, severity, ctx, reason, (event["event_id"],), event["occurred_at"],
                       f"{event['person_key']}|{disease}|{kind}"))


def severe_disability(event: Mapping[str, Any], ctx: Context) -> Verdict:
    if event["certificate_status"] != "VALID" or event["disability_grade"] not in ("GRADE_1", "GRADE_2"):
        return Verdict()
    grade = "一级" if event["disability_grade"] == "GRADE_1" else "二级"
    reason = f"{_who(ctx)}持有效残疾人证, 残疾等级{grade}(发证{event['issue_date']:%Y-%m-%d}), 重度残疾"
    return _one(_draft(Rule.SEVERE_DISABILITY, Severity.MEDIUM, ctx, reason, (event["event_id"],), event["issue_date"],
                       event["person_key"]))


# --- SAFETY_NET, INSURANCE_GAP, LOAN_OVERDUE ---------------------------------------------------------------------

_ASSISTANCE = {"MINIMUM_LIVING_GUARANTEE": "低保", "EXTREME_POVERTY_SUPPORT": "特困供养",
               "DISABILITY_LIVING_ALLOWANCE": "困难残疾人生活补贴",
               "SEVERE_DISABILITY_CARE_ALLOWANCE": "重度残疾人护理补贴",
               "TEMPORARY_ASSISTANCE": "临时救助"}


def safety_net(event: Mapping[str, Any], ctx: Context) -> Verdict:
    kind, change, status = event["assistance_type"], event["change_type"], ctx.household.monitoring_status
    basic = kind in ("MINIMUM_LIVING_GUARANTEE", "EXTREME_POVERTY_SUPPORT")
    label = _ASSISTANCE.get(kind, kind)
    if basic and change == "EXITED" and status == "MONITORING":
        what = f"监测中家庭退出{label}"
    elif kind == "TEMPORARY_ASSISTANCE" and change == "PAID":
        what = f"发放临时救助{format_cny(event['amount'])}"
    elif basic and change == "ENROLLED" and status == "NOT_INCLUDED":
        what = f"未纳入监测的家庭纳入{label}"
    else:
        return Verdict()
    reason = f"社会救助: {_who(ctx)}{what}(开始日期{event['start_date']:%Y-%m-%d})"
    return _one(_draft(Rule.SAFETY_NET, Severity.MEDIUM, ctx, reason, (event["event_id"],), event["start_date"], None))


def insurance_gap(event: Mapping[str, Any], ctx: Context) -> Verdict:
    if event["insurance_type"] != "BASIC_MEDICAL" or event["enrolment_status"] not in ("NOT_ENROLLED", "SUSPENDED"):
        return Verdict()
    label = "未参保" if event["enrolment_status"] == "NOT_ENROLLED" else "停保"
    reason = f"{_who(ctx)}{event['year']}年度基本医疗保险{label}, 看病就医缺少保障"
    return _one(_draft(Rule.INSURANCE_GAP, Severity.MEDIUM, ctx, reason, (event["event_id"],), event["occurred_at"],
                       f"{event['person_key']}|{event['year']}"))


def loan_overdue(event: Mapping[str, Any], ctx: Context) -> Verdict:
    due: dt.date | None = event.get("loan_due_date")
    if (event["loan_type"] != "POVERTY_MICROCREDIT" or due is None or event["loan_balance"] <= 0
            or due >= event["comparison_date"]):
        return Verdict()
    issued: dt.date | None = event.get("loan_issue_date")
    reason = (f"{_who(ctx)}脱贫人口小额信贷逾期: 到期日期{due:%Y-%m-%d}, 比对日期{event['comparison_date']:%Y-%m-%d}"
              f"贷款余额{format_cny(event['loan_balance'])}")
    fact = f"{event['person_key']}|{issued.isoformat() if issued else ''}|{due.isoformat()}"
    return _one(_draft(Rule.LOAN_OVERDUE, Severity.MEDIUM, ctx, reason, (event["event_id"],), due, fact))


# --- REPORTED_RISK -----------------------------------------------------------------------------------------------


def reported_risk(event: Mapping[str, Any], ctx: Context) -> Verdict:
    risk = RISK_TYPE.get(event["risk_type"], event["risk_type"])
    if "channel" in event:  # an intake report
        channel = INTAKE_CHANNEL.get(event["channel"], event["channel"])
        severity = Severity.MEDIUM
        extra = ""
        if event["channel"] == "CADRE_SCREENING":
            result = event.get("visit_result")
            if result == "NORMAL" or result is None:
                return Verdict()
            severity = Severity.HIGH if result == "RELAPSED" else Severity.MEDIUM
            extra = ", 走访结论: " + ("已返贫" if result == "RELAPSED" else "存在风险")
        text = event["description"]
        day = event["reported_on"]
    else:  # a public-opinion clue naming a person
        channel, extra, severity = "网络舆情线索", f", 线索编号{event['clue_id']}", Severity.MEDIUM
        text, day = event["summary"], event["found_date"]
    reason = f"{channel}({day:%Y-%m-%d}): 风险类型{risk}{extra}; 内容: {text}"
    return _one(_draft(Rule.REPORTED_RISK, severity, ctx, reason, (event["event_id"],), day, None))


EventRule = Callable[[Mapping[str, Any], Context], Verdict]

# The household rules by name: a feed's declaration (schemas.catalog.Feed.rules) says which judge its events.
# The regional rules (REGIONAL_*, COLLECTIVE_INCOME_DROP) are the village stage's (regional_rules.py).
EVENT_RULES: dict[str, EventRule] = {
    Rule.DEATH_IN_HOUSEHOLD: death_in_household,
    Rule.MEDICAL_EXPENSE: _medical,
    Rule.DISASTER_LOSS: disaster,
    Rule.SCHOOL_DROPOUT: school_dropout,
    Rule.ASSET_PURCHASE: asset_purchase,
    Rule.INCOME_BELOW_LINE: income,  # one function for the two income rules: INCOME_DROP is judged with it
    Rule.JOB_LOSS: job_loss,
    Rule.HOUSING_UNSAFE: housing_unsafe,
    Rule.WATER_UNSAFE: water_unsafe,
    Rule.ACCIDENT_INJURY: accident_injury,
    Rule.SERIOUS_ILLNESS: serious_illness,
    Rule.CHRONIC_DISEASE: chronic_disease,
    Rule.SEVERE_DISABILITY: severe_disability,
    Rule.SAFETY_NET: safety_net,
    Rule.INSURANCE_GAP: insurance_gap,
    Rule.LOAN_OVERDUE: loan_overdue,
    Rule.REPORTED_RISK: reported_risk,
}

TIMER_RULES: dict[str, Callable[[Timer, Context], Verdict]] = {
    Rule.JOB_LOSS: _fire_job_loss,
    Rule.WATER_UNSAFE: _fire_water,
}


def judge(rules: Iterable[str], event: Mapping[str, Any], ctx: Context) -> Verdict:
    """What the named rules (a feed's `rules`) decide for one event."""
    out = Verdict()
    for name in rules:
        rule = EVENT_RULES.get(name)
        if rule is None:
            continue  # INCOME_DROP (judged by `income`) or a regional rule
        found = rule(event, ctx if out.stays is None else _with_stays(ctx, out.stays))
        out.add(found)
    return out


def _with_stays(ctx: Context, stays: list[Any]) -> Context:
    return Context(ctx.topic, ctx.person, ctx.household, ctx.facts, stays, ctx.today, ctx.cfg)


def fire(timer: Timer, ctx: Context) -> Verdict:
    """What a timer that came due decides (nothing when the matter was resolved meanwhile)."""
    rule = TIMER_RULES.get(timer.rule)
    return rule(timer, ctx) if rule is not None else Verdict()
