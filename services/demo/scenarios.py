"""Rows the demo adds on purpose to the generated department files, for the rules random rows seldom reach and
for the cases that must raise nothing.

Each `Designed` row names its feed, its cells (by Avro field, as the department's file writes them) and what it
must do: raise `rule` for `subject` (a household, a village or a township), or raise nothing at all (`rule`
None: its event is evidence of no alert). `services.demo.oracle` checks both against the simulated monitor, and
the demo's run against the case DB. The households are the roster's; the choice is deterministic.

    REGIONAL_RETURNS       ten working-age people of one township home from work within the last three weeks
    JOB_LOSS               one person back home 120 days ago (raises); one whose new job started 30 days after
                           the end, reported first (nothing)
    INCOME_DROP            a household's 人均纯收入 from 20,000 to 12,000 (raises, both rows its evidence); 12,000
                           to 11,000 (nothing)
    LOAN_OVERDUE           a 脱贫人口小额信贷 due 60 days ago with a balance (raises); one due next year (nothing)
    COLLECTIVE_INCOME_DROP a village's 可分配收益 down to 0 (HIGH); one down by 6 % (nothing)
    REGIONAL_RISK_CLUSTER  five households of one village with houses assessed D within 20 days (and their five
                           HOUSING_UNSAFE alerts); a renovation completed (nothing)
    REGIONAL_WATER         a village's water problem unsolved for 50 days (HIGH); one solved (nothing)
    WATER_UNSAFE           a household's water found wanting ten days ago (MEDIUM, its timer set)
    and one row each for INSURANCE_GAP, SAFETY_NET, SEVERE_DISABILITY, CHRONIC_DISEASE, SERIOUS_ILLNESS,
    ACCIDENT_INJURY, REPORTED_RISK (a public-opinion clue naming a person) and INCOME_BELOW_LINE
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.alerts import Rule
from services.demo.feeds import Household, Member
from services.monitor.rules import age_at

__all__ = ["Designed", "designed_rows"]


@dataclass(frozen=True)
class Designed:
    department: str
    feed: str
    cells: dict[str, str]  # by Avro field, as the file writes them
    rule: str | None  # the rule it must raise; None: it must raise nothing
    subject: str  # the household, village or township of that alert ("" when none)


def _iso(day: dt.date) -> str:
    return day.isoformat()


def _working(m: Member, today: dt.date) -> bool:
    return 20 <= age_at(m.birth, today) <= 55


def _job(m: Member, start: dt.date, end: dt.date | None) -> dict[str, str]:
    return {"county": "博乐市", "township": "小营盘镇", "village": "达勒特村", "name": m.name, "id_number": m.id_number,
            "transfer_channel": "有组织转移", "employment_scope": "区外", "start_date": _iso(start),
            "last_month_wage": "4,200", "employer": "江苏某纺织有限公司", "end_date": _iso(end) if end else "",
            "pension_insurance": "已参保"}


def _income(h: Household, year: int, per_capita: int) -> dict[str, str]:
    size = len(h.members)
    return {"head_name": h.head.name, "head_id_number": h.head.id_number, "year": str(year),
            "household_size": str(size),
            "net_income": str(per_capita * size), "per_capita_net_income": str(per_capita), "wage_income": "",
            "business_income": "", "transfer_income": "", "property_income": ""}


def _loan(m: Member, due: dt.date, today: dt.date) -> dict[str, str]:
    return {"name": m.name, "id_number": m.id_number, "deposit_balance": "300.00", "loan_balance": "20000",
            "loan_type": "脱贫人口小额信贷", "loan_issue_date": _iso(due - dt.timedelta(days=3 * 365)),
            "loan_due_date": _iso(due), "interest_subsidy": "", "comparison_date": _iso(today - dt.timedelta(days=10))}


def _house(h: Household, day: dt.date, cause: str, grade: str, damage: str) -> dict[str, str]:
    return {"head_name": h.head.name, "head_id_number": h.head.id_number, "village_code": h.village, "cause": cause,
            "safety_grade": grade, "damage": damage, "event_date": _iso(day)}


def _water(village: str, found: dt.date, resolved: dt.date | None, head: Member | None = None) -> dict[str, str]:
    return {"village_code": village, "head_id_number": head.id_number if head else "", "indicators": "水量、供水保证率",
            "found_date": _iso(found),
            "description": "机井出水量不足, 夏季集中供水时段停水", "resolved_date": _iso(resolved) if resolved else ""}


def _collective(village: str, year: int, now: int, before: int) -> dict[str, str]:
    return {"village_code": village, "year": str(year), "operating_income": "260,000",
            "distributable_income": str(now), "beneficiaries": "640", "previous_distributable_income": str(before)}


def designed_rows(households: Sequence[Household], today: dt.date) -> list[Designed]:
    """The designed rows, in the order they are written (after the generated rows of their file)."""
    ordered = sorted(households, key=lambda h: h.household_id)
    by_township: dict[str, list[Household]] = defaultdict(list)
    by_village: dict[str, list[Household]] = defaultdict(list)
    for h in ordered:
        by_township[h.village[:9]].append(h)
        by_village[h.village].append(h)
    out: list[Designed] = []
    used: set[str] = set()

    def free(pool: Sequence[Household]) -> list[Household]:
        return [h for h in pool if h.household_id not in used]

    # REGIONAL_RETURNS: the township with the most households; ten people of working age, one per household
    township = max(sorted(by_township), key=lambda t: len(by_township[t]))
    returned = [(h, m) for h in free(by_township[township]) for m in h.members if _working(m, today)]
    people: list[tuple[Household, Member]] = []
    for h, m in returned:
        if h.household_id not in {x.household_id for x, _ in people}:
            people.append((h, m))
        if len(people) == 10:
            break
    for i, (h, m) in enumerate(people):
        used.add(h.household_id)
        end = today - dt.timedelta(days=3 + 2 * i)
        out.append(Designed("hrss", "employment", _job(m, end - dt.timedelta(days=200), end),
                            Rule.REGIONAL_RETURNS.value, township))
    singles = iter(h for h in ordered if h.household_id not in used and any(_working(m, today) for m in h.members))

    def single() -> tuple[Household, Member]:
        h = next(singles)
        used.add(h.household_id)
        return h, next(m for m in h.members if _working(m, today))

    # JOB_LOSS: home 120 days ago, no new job (raises); home 150 days ago with a new job 30 days later (nothing:
    # the new job is reported first, so the end is judged with it)
    h, m = single()
    out.append(Designed("hrss", "employment", _job(m, today - dt.timedelta(days=400), today - dt.timedelta(days=120)),
                        Rule.JOB_LOSS.value, h.household_id))
    h, m = single()
    ended = today - dt.timedelta(days=150)
    out.append(Designed("hrss", "employment", _job(m, ended + dt.timedelta(days=30), None), None, ""))
    out.append(Designed("hrss", "employment", _job(m, today - dt.timedelta(days=500), ended), None, ""))
    # INCOME_DROP: from 20,000 to 12,000 (raises, for the later year); from 12,000 to 11,000 (nothing); last year
    # and this year, so that both years' rows are recent (the generated files date 年度 rows within 700 days)
    year = today.year
    h, _ = single()
    for earning, when in ((20000, year - 1), (12000, year)):
        out.append(Designed("statistics", "household-income", _income(h, when, earning), Rule.INCOME_DROP.value,
                            h.household_id))
    h, _ = single()
    out.append(Designed("statistics", "household-income", _income(h, year - 1, 12000), None, ""))
    out.append(Designed("statistics", "household-income", _income(h, year, 11000), None, ""))
    # LOAN_OVERDUE
    h, m = single()
    out.append(Designed("pboc", "deposit-loan", _loan(m, today - dt.timedelta(days=60), today),
                        Rule.LOAN_OVERDUE.value, h.household_id))
    h, m = single()
    out.append(Designed("pboc", "deposit-loan", _loan(m, today + dt.timedelta(days=300), today), None, ""))
    # REGIONAL_RISK_CLUSTER: five houses of one village assessed D within 20 days; a renovation completed
    village = next(v for v in sorted(by_village, key=lambda v: (-len(free(by_village[v])), v)))
    for i, h in enumerate(free(by_village[village])[:5]):
        used.add(h.household_id)
        out.append(Designed("housing", "house-safety", _house(h, today - dt.timedelta(days=40 - 4 * i), "鉴定", "D",
                                                              "严重损坏"), Rule.REGIONAL_RISK_CLUSTER.value, village))
    h, _ = single()
    out.append(Designed("housing", "house-safety", _house(h, today - dt.timedelta(days=30), "改造竣工", "A", "无"),
                        None, ""))
    # COLLECTIVE_INCOME_DROP and REGIONAL_WATER, villages other than the cluster's
    others = [v for v in sorted(by_village) if v != village]
    out.append(Designed("agriculture", "collective-income", _collective(others[0], year, 0, 80000),
                        Rule.COLLECTIVE_INCOME_DROP.value, others[0]))
    out.append(Designed("agriculture", "collective-income", _collective(others[1], year, 300000, 320000), None, ""))
    out.append(Designed("water", "drinking-water", _water(others[2], today - dt.timedelta(days=50), None),
                        Rule.REGIONAL_WATER.value, others[2]))
    out.append(Designed("water", "drinking-water", _water(others[3], today - dt.timedelta(days=100),
                                                          today - dt.timedelta(days=80)), None, ""))
    # one row for each person rule that random rows may miss in a small population
    day = _iso(today - dt.timedelta(days=45))
    for department, feed, rule, cells in (
        ("medical-security", "insurance", Rule.INSURANCE_GAP,
         {"sex": "", "insurance_type": "基本医疗保险", "enrolment_status": "停保", "year": str(year),
          "personal_contribution": "0", "subsidised_contribution": ""}),
        ("civil-affairs", "assistance", Rule.SAFETY_NET,
         {"assistance_type": "临时救助", "change_type": "发放", "amount": "1500", "start_date": day, "end_date": ""}),
        ("disabled-federation", "disability-certificate", Rule.SEVERE_DISABILITY,
         {"disability_category": "肢体", "disability_grade": "一级", "issue_date": day, "certificate_status": "有效"}),
        ("health", "chronic-disease", Rule.CHRONIC_DISEASE,
         {"disease": "结核病", "diagnosis_date": day, "contract_service": "已签约", "management_status": "在管"}),
        ("health", "serious-illness", Rule.SERIOUS_ILLNESS,
         {"disease": "急性白血病", "hospital": "博尔塔拉蒙古自治州人民医院", "treatment_start_date": day,
          "treatment_status": "放弃救治"}),
        ("public-security", "traffic-accident", Rule.ACCIDENT_INJURY,
         {"accident_date": day, "casualty": "重伤", "location": "", "liability": "同等"}),
    ):
        h, m = single()
        sex = {"sex": "男" if m.male else "女"} if "sex" in cells else {}
        out.append(Designed(department, feed, {"name": m.name, "id_number": m.id_number, **cells, **sex}, rule,
                            h.household_id))
    h, m = single()
    out.append(Designed("cac", "public-opinion", {
        "clue_id": "WX-DEMO-0001", "found_date": day, "platform": "抖音", "village_code": h.village,
        "person_id_number": m.id_number, "risk_type": "因病", "summary": "视频称该户家中有人重病住院, 生活困难"},
        Rule.REPORTED_RISK.value, h.household_id))
    h, _ = single()
    out.append(Designed("statistics", "household-income", _income(h, year, 6000), Rule.INCOME_BELOW_LINE.value,
                        h.household_id))
    # WATER_UNSAFE: a household's water found wanting ten days ago (MEDIUM now, HIGH in twenty days)
    h, _ = single()
    out.append(Designed("water", "drinking-water", _water(h.village, today - dt.timedelta(days=10), None, h.head),
                        Rule.WATER_UNSAFE.value, h.household_id))
    return out
