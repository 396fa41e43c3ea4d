"""The plan's rhythm in numbers (工作机制: monthly dispatch, quarterly analysis, annual screening): the report of
`povwatch report monthly|quarterly|annual`. Pure: plain rows in, a `Report` out; the query layer is
services/cases/report_query.py, the command services/cases/report_cli.py.

Per county (the first 6 digits of the village code) and household category (the roster's; VILLAGE for a regional
case of a village, TOWNSHIP for one of a township - REGIONAL_RETURNS, 9-digit region code -, UNKNOWN for a household
not in the roster), for the period and the one before it:
    new_alerts           evidence received in the period (each alert once)
    households_included  households with a LABEL step (纳入监测) dated in the period
    risks_eliminated     households with an ANNOUNCE_LABEL step (风险消除) dated in the period
    open_cases           cases open at the period's end (opened by then, not closed by then), split by
    open_step_<STEP>     their last step by then (open_step_NONE: no step yet), and by
    open_age_*           their age then: under 30 days, 30 to 90, over 90
Each measure comes with the previous period's value and the change. Days are Beijing time (UTC+8, the time of
the prefecture's administration); the end of a period still running is today.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from plumbing.table import render_table
from schemas.errors import PovwatchError

__all__ = ["PeriodKind", "Period", "parse_period", "last_complete", "CaseRow", "EvidenceRow", "StepRow", "Line",
           "Report", "compute", "MEASURES", "MEASURE_LABELS", "CATEGORY_LABELS", "COUNTY_NAMES", "STEPS", "LOCAL",
           "local_day", "ReportError", "render_text", "csv_rows", "period_of"]

LOCAL = dt.timezone(dt.timedelta(hours=8), "CST")  # Beijing time
COUNTY_NAMES = {"652701": "博乐市", "652702": "阿拉山口市", "652722": "精河县", "652723": "温泉县"}
CATEGORY_LABELS = {"UNSTABLE_LIFTED": "脱贫不稳定户", "MARGINAL": "边缘易致贫户", "SUDDEN_HARDSHIP": "突发严重困难户",
                   "LIFTED": "脱贫户", "ORDINARY": "一般农户", "VILLAGE": "村级区域预警", "TOWNSHIP": "乡镇级区域预警",
                   "UNKNOWN": "未在名册"}
# the steps a case can be at, in the order of the plan (NONE: opened by an alert, no step yet)
STEPS = ("NONE", "APPLY", "PUBLIC_NOTICE", "TOWNSHIP_VERIFY", "COUNTY_CONFIRM", "DATA_COMPARE", "LABEL",
         "NOMINATE_NOTICE", "ANNOUNCE_LABEL")
AGES = ("lt30", "30to90", "gt90")
MEASURES: tuple[str, ...] = ("new_alerts", "households_included", "risks_eliminated", "open_cases",
                             *(f"open_step_{s}" for s in STEPS), *(f"open_age_{a}" for a in AGES))
MEASURE_LABELS = {"new_alerts": "新增预警", "households_included": "纳入监测户", "risks_eliminated": "风险消除户",
                  "open_cases": "在办案件", "open_age_lt30": "在办<30天", "open_age_30to90": "在办30-90天",
                  "open_age_gt90": "在办>90天", "open_step_NONE": "未启动程序", "open_step_APPLY": "申请",
                  "open_step_PUBLIC_NOTICE": "公示", "open_step_TOWNSHIP_VERIFY": "乡镇核准",
                  "open_step_COUNTY_CONFIRM": "县级确认", "open_step_DATA_COMPARE": "数据比对",
                  "open_step_LABEL": "已标注纳入", "open_step_NOMINATE_NOTICE": "提名公示",
                  "open_step_ANNOUNCE_LABEL": "已公告消除"}


class ReportError(PovwatchError):
    """A report that cannot be made as asked (a bad period, a bad county code)."""


class PeriodKind(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNUAL = "annual"


@dataclass(frozen=True)
class Period:
    kind: PeriodKind
    year: int
    index: int  # month 1-12, quarter 1-4, 1 for a year

    @property
    def start(self) -> dt.date:
        month = {PeriodKind.MONTHLY: self.index, PeriodKind.QUARTERLY: 3 * self.index - 2}.get(self.kind, 1)
        return dt.date(self.year, month, 1)

    @property
    def end(self) -> dt.date:
        """The last day (inclusive)."""
        return self.next().start - dt.timedelta(days=1)

    @property
    def label(self) -> str:
        if self.kind == PeriodKind.MONTHLY:
            return f"{self.year}-{self.index:02d}"
        if self.kind == PeriodKind.QUARTERLY:
            return f"{self.year}-Q{self.index}"
        return str(self.year)

    def _per_year(self) -> int:
        return {PeriodKind.MONTHLY: 12, PeriodKind.QUARTERLY: 4}.get(self.kind, 1)

    def next(self) -> Period:
        n = self._per_year()
        return Period(self.kind, self.year + self.index // n, self.index % n + 1)

    def previous(self) -> Period:
        n = self._per_year()
        return Period(self.kind, self.year - (self.index == 1), (self.index - 2) % n + 1)

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


def period_of(kind: PeriodKind, day: dt.date) -> Period:
    if kind == PeriodKind.MONTHLY:
        return Period(kind, day.year, day.month)
    if kind == PeriodKind.QUARTERLY:
        return Period(kind, day.year, (day.month - 1) // 3 + 1)
    return Period(kind, day.year, 1)


def last_complete(kind: PeriodKind, today: dt.date) -> Period:
    """The last period of `kind` that ended before `today`: the default of the report."""
    return period_of(kind, today).previous()


_FORMS = {PeriodKind.MONTHLY: (re.compile(r"(\d{4})-(\d{2})"), "YYYY-MM, e.g. 2025-03"),
          PeriodKind.QUARTERLY: (re.compile(r"(\d{4})-[Qq]([1-4])"), "YYYY-Qn, e.g. 2025-Q1"),
          PeriodKind.ANNUAL: (re.compile(r"(\d{4})()"), "YYYY, e.g. 2025")}


def parse_period(kind: PeriodKind, text: str, today: dt.date) -> Period:
    """`text` as a period of `kind`; ReportError (one line) if it is not one or has not begun by `today`."""
    pattern, form = _FORMS[kind]
    match = pattern.fullmatch(text.strip())
    if match is None:
        raise ReportError(f"--period {text!r}: a {kind} period is written {form}")
    year, index = int(match.group(1)), int(match.group(2) or 1)
    if kind == PeriodKind.MONTHLY and not 1 <= index <= 12:
        raise ReportError(f"--period {text!r}: there is no month {index}")
    if year < 2000:
        raise ReportError(f"--period {text!r}: the year must be 2000 or later")
    period = Period(kind, year, index)
    if period.start > today:
        raise ReportError(f"--period {text!r}: it has not begun (today is {today})")
    return period


def local_day(moment: dt.datetime) -> dt.date:
    """The day (Beijing time) of an aware moment."""
    return moment.astimezone(LOCAL).date()


# --- the rows it reads -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseRow:
    case_id: int
    county: str
    category: str
    opened_on: dt.date
    closed_on: dt.date | None  # None: still open


@dataclass(frozen=True)
class EvidenceRow:
    county: str
    category: str
    received_on: dt.date


@dataclass(frozen=True)
class StepRow:
    case_id: int
    household_id: str
    county: str
    category: str
    step: str
    on_day: dt.date
    seq: int  # the history row's id: orders steps of one day


# --- the report ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    county: str  # 6 digits, or "" for the total
    category: str  # or "" for the total
    values: dict[str, int]
    previous: dict[str, int]

    def change(self, measure: str) -> int:
        return self.values.get(measure, 0) - self.previous.get(measure, 0)


@dataclass(frozen=True)
class Report:
    period: Period
    previous: Period
    as_of: dt.date  # the day open cases are counted at (the period's end, or today if it is still running)
    county: str | None
    lines: tuple[Line, ...]  # by county, then category; the total last
    total: Line


def _age(days: int) -> str:
    return "lt30" if days < 30 else "30to90" if days <= 90 else "gt90"


def _measures(period: Period, today: dt.date, cases: Sequence[CaseRow], evidence: Sequence[EvidenceRow],
              steps: Sequence[StepRow]) -> dict[tuple[str, str], Counter[str]]:
    out: dict[tuple[str, str], Counter[str]] = {}

    def bump(county: str, category: str, measure: str, by: int = 1) -> None:
        out.setdefault((county, category), Counter())[measure] += by

    for e in evidence:
        if period.contains(e.received_on):
            bump(e.county, e.category, "new_alerts")
    for measure, step in (("households_included", "LABEL"), ("risks_eliminated", "ANNOUNCE_LABEL")):
        seen = {(s.county, s.category, s.household_id) for s in steps if s.step == step and period.contains(s.on_day)}
        for county, category, _ in seen:
            bump(county, category, measure)
    as_of = min(period.end, today)
    last: dict[int, StepRow] = {}
    for s in sorted(steps, key=lambda s: (s.on_day, s.seq)):
        if s.on_day <= as_of:
            last[s.case_id] = s
    for c in cases:
        if c.opened_on > as_of or (c.closed_on is not None and c.closed_on <= as_of):
            continue
        bump(c.county, c.category, "open_cases")
        taken = last.get(c.case_id)
        bump(c.county, c.category, f"open_step_{taken.step if taken else 'NONE'}")
        bump(c.county, c.category, f"open_age_{_age((as_of - c.opened_on).days)}")
    return out


def compute(period: Period, today: dt.date, *, cases: Iterable[CaseRow], evidence: Iterable[EvidenceRow],
            steps: Iterable[StepRow], county: str | None = None) -> Report:
    """The report of `period` against the period before it, for every county or only `county`."""
    def mine(rows: Iterable[_Row]) -> list[_Row]:
        return [r for r in rows if county is None or r.county == county]

    case_rows, evidence_rows, step_rows = mine(cases), mine(evidence), mine(steps)
    previous = period.previous()
    now = _measures(period, today, case_rows, evidence_rows, step_rows)
    before = _measures(previous, today, case_rows, evidence_rows, step_rows)
    keys = sorted(set(now) | set(before), key=lambda k: (k[0], _category_order(k[1])))
    lines = tuple(Line(c, cat, _full(now.get((c, cat))), _full(before.get((c, cat)))) for c, cat in keys)
    total = Line("", "", _sum(line.values for line in lines), _sum(line.previous for line in lines))
    return Report(period, previous, min(period.end, today), county, lines, total)


_Row = TypeVar("_Row", CaseRow, EvidenceRow, StepRow)


def _category_order(category: str) -> tuple[int, str]:
    order = list(CATEGORY_LABELS)
    return (order.index(category), "") if category in order else (len(order), category)


def _full(counts: Counter[str] | None) -> dict[str, int]:
    return {m: (counts or Counter())[m] for m in MEASURES}


def _sum(rows: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for row in rows:
        total.update(row)
    return {m: total[m] for m in MEASURES}


# --- renderings ------------------------------------------------------------------------------------------------
def _table(rows: Sequence[Sequence[str]], right_from: int) -> list[str]:
    return render_table(rows[0], rows[1:], right_from=right_from).split("\n")


def _who(line: Line) -> list[str]:
    if not line.county:
        return ["合计 TOTAL", ""]
    return [f"{line.county} {COUNTY_NAMES.get(line.county, '')}".rstrip(),
            CATEGORY_LABELS.get(line.category, line.category)]


def _cell(line: Line, measure: str) -> str:
    change = line.change(measure)
    return f"{line.values[measure]} ({change:+d})" if change else f"{line.values[measure]} (=)"


def render_text(report: Report) -> str:
    """Two tables for the terminal: the period's flow and open cases by age; open cases by their current step.
    Each cell: the value, then the change against the previous period."""
    p = report.period
    where = f"county {report.county} {COUNTY_NAMES.get(report.county, '')}".rstrip() if report.county else \
        "every county"
    head = [f"povwatch report {p.kind} {p.label} ({p.start} to {p.end}), {where}; change against "
            f"{report.previous.label}; open cases as of {report.as_of}"]
    lines = [*report.lines, report.total]
    flow = ("new_alerts", "households_included", "risks_eliminated", "open_cases", "open_age_lt30",
            "open_age_30to90", "open_age_gt90")
    steps = tuple(m for m in MEASURES if m.startswith("open_step_")
                  and any(line.values[m] or line.previous[m] for line in lines))
    out = head + [""]
    out += _table([["COUNTY 县市", "CATEGORY 类别", *(MEASURE_LABELS[m] for m in flow)]]
                  + [[*_who(line), *(_cell(line, m) for m in flow)] for line in lines], right_from=2)
    if steps:
        out += ["", "在办案件当前环节 open cases by their current step"]
        out += _table([["COUNTY 县市", "CATEGORY 类别", *(MEASURE_LABELS[m] for m in steps)]]
                      + [[*_who(line), *(_cell(line, m) for m in steps)] for line in lines], right_from=2)
    if not report.lines:
        out.append("(nothing in this period or the one before)")
    return "\n".join(out)


def csv_rows(report: Report) -> list[list[str]]:
    """The report as rows for a CSV file: one per county and category and the total; every measure with its
    previous value and change. Headers in Chinese and English."""
    header = ["期间 period", "上期 previous_period", "县市代码 county", "县市 county_name", "类别代码 category",
              "类别 category_name"]
    for m in MEASURES:
        header += [f"{MEASURE_LABELS[m]} {m}", f"上期 {m}_previous", f"变化 {m}_change"]
    rows = [header]
    for line in [*report.lines, report.total]:
        row = [report.period.label, report.previous.label, line.county or "TOTAL",
               COUNTY_NAMES.get(line.county, "合计" if not line.county else ""), line.category,
               CATEGORY_LABELS.get(line.category, "")]
        for m in MEASURES:
            row += [str(line.values[m]), str(line.previous[m]), str(line.change(m))]
        rows.append(row)
    return rows
