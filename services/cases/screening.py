"""集中排查, the plan's screening rhythm, as pure code: periods, who is screened, what a cadre visit closes, coverage.

The plan (工作机制, 四种方式 · 基层干部排查): village cadres visit the focus households every quarter and every rural
household once a year. `povwatch screening open quarterly|annual` opens one task per household to visit in a
period; a cadre-visit report dated in the period closes it (the case feed), or a township, county or bureau user
marks it "已排查" on the desk with a note. The query layer is services/cases/screening_store.py, the command
services/cases/screening_cli.py, the Kafka consumer services/casefeed/screening_feed.py.

    parse_period("2026Q4", kind)  -> Period      one line (ScreeningError) for a malformed period or the wrong kind
    current_period(kind, today)   -> Period      the quarter or year `today` lies in
    periods_containing(day)       -> labels      the quarter and the year a visit on `day` counts for
    screened(kind, households)    -> households  quarterly: the focus households; annual: all of them
    to_open(kind, period, households, existing) -> tasks to open (not yet opened for the period)
    decide_visit(event_id, known, tasks)        -> what one cadre-visit report does
    coverage(rows)                -> Coverage    open, closed and % closed per township, and the total

Focus household (重点户): category UNSTABLE_LIFTED 脱贫不稳定户, MARGINAL 边缘易致贫户 or SUDDEN_HARDSHIP
突发严重困难户, or monitoring_status MONITORING (纳入监测, whatever its category).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from plumbing.table import render_table
from schemas.errors import PovwatchError
from services.casedb.errors import StepRefused

__all__ = ["ScreeningError", "RoleRefused", "CLOSER_ROLES", "Kind", "Period", "parse_period", "current_period",
           "periods_containing", "FOCUS_CATEGORIES", "HouseholdRow", "NewTask", "is_focus", "screened", "to_open",
           "township_of", "TaskState", "VisitOutcome", "VisitDecision", "decide_visit", "Coverage", "CoverageLine",
           "coverage", "render_coverage", "coverage_json", "check_county", "MIN_YEAR", "MAX_NOTE"]

FOCUS_CATEGORIES = frozenset({"UNSTABLE_LIFTED", "MARGINAL", "SUDDEN_HARDSHIP"})
MIN_YEAR = 2000
MAX_NOTE = 2000  # characters of a "已排查" note (the desk's NOTE_MAX)
# who may mark a task screened by hand: the township verifies (the plan's 乡镇核实), the county and the bureau may too;
# a village user sees the village's tasks and reports the visit as a cadre-visit report instead
CLOSER_ROLES = frozenset({"township", "county", "bureau"})


class ScreeningError(PovwatchError):
    """A screening command or action that cannot be done as asked: one line."""


class RoleRefused(StepRefused):
    """The user's role may not do this (a village user marking a task screened): the desk answers 403."""


class Kind(StrEnum):
    QUARTERLY = "quarterly"
    ANNUAL = "annual"


@dataclass(frozen=True, order=True)
class Period:
    """A quarter (quarter 1-4) or a year (quarter None)."""

    year: int
    quarter: int | None = None

    @property
    def kind(self) -> Kind:
        return Kind.ANNUAL if self.quarter is None else Kind.QUARTERLY

    @property
    def label(self) -> str:
        """As stored in screening_tasks.period: 2026Q4, 2026."""
        return str(self.year) if self.quarter is None else f"{self.year}Q{self.quarter}"

    @property
    def start(self) -> dt.date:
        return dt.date(self.year, 1 if self.quarter is None else 3 * self.quarter - 2, 1)

    @property
    def end(self) -> dt.date:
        """The last day (inclusive)."""
        if self.quarter is None or self.quarter == 4:
            return dt.date(self.year, 12, 31)
        return dt.date(self.year, 3 * self.quarter + 1, 1) - dt.timedelta(days=1)

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def __str__(self) -> str:
        return self.label


_FORM = re.compile(r"(\d{4})(?:-?[Qq](\d+))?")
_EXAMPLE = {Kind.QUARTERLY: "a quarter, e.g. 2026Q4", Kind.ANNUAL: "a year, e.g. 2026"}


def parse_period(text: str, kind: Kind | None = None) -> Period:
    """`text` (2026Q4, 2026-Q4, 2026q4 or 2026) as a period; of `kind` when given. ScreeningError (one line) if
    it is malformed, names no real quarter, lies before MIN_YEAR, or is of the other kind."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    match = _FORM.fullmatch(text.strip()) if text.isascii() else None
    if match is None:
        wanted = _EXAMPLE[kind] if kind is not None else "a quarter (e.g. 2026Q4) or a year (e.g. 2026)"
        raise ScreeningError(f"--period {shown!r}: not a period; write {wanted}")
    year = int(match.group(1))
    quarter = int(match.group(2)) if match.group(2) is not None else None
    if quarter is not None and not 1 <= quarter <= 4:
        raise ScreeningError(f"--period {shown!r}: there is no quarter {quarter} (quarters are Q1 to Q4)")
    if year < MIN_YEAR:
        raise ScreeningError(f"--period {shown!r}: the year must be {MIN_YEAR} or later")
    period = Period(year, quarter)
    if kind is not None and period.kind != kind:
        what = "a year" if quarter is None else "a quarter"
        article = "an" if kind == Kind.ANNUAL else "a"
        raise ScreeningError(f"--period {shown!r} is {what}; the period of {article} {kind} screening is "
                             f"{_EXAMPLE[kind]}")
    return period


def current_period(kind: Kind, today: dt.date) -> Period:
    return Period(today.year, None if kind == Kind.ANNUAL else (today.month - 1) // 3 + 1)


def periods_containing(day: dt.date) -> tuple[str, str]:
    """The labels of the quarter and the year `day` lies in: the tasks a visit on `day` may close."""
    return current_period(Kind.QUARTERLY, day).label, current_period(Kind.ANNUAL, day).label


def check_county(text: str | None) -> str | None:
    """--county: a 6-digit county code (a prefix of the 12-digit village codes), or None."""
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{6}", text.strip()):
        raise ScreeningError(f"--county {text[:40]!r}: a county is its 6-digit division code, e.g. 652722 (精河县)")
    return text.strip()


def township_of(village_code: str) -> str:
    return village_code[:9]


# --- who gets a task ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HouseholdRow:
    household_id: str
    village_code: str
    category: str
    monitoring_status: str


@dataclass(frozen=True)
class NewTask:
    period: str
    kind: Kind
    household_id: str
    village_code: str
    township_code: str


def is_focus(category: str, monitoring_status: str) -> bool:
    """A focus household (重点户): a focus category, or being monitored (纳入监测)."""
    return category in FOCUS_CATEGORIES or monitoring_status == "MONITORING"


def screened(kind: Kind, households: Iterable[HouseholdRow], county: str | None = None) -> list[HouseholdRow]:
    """The households a screening of `kind` visits (of `county` only, when given), in household_id order."""
    return sorted((h for h in households
                   if (county is None or h.village_code.startswith(county))
                   and (kind == Kind.ANNUAL or is_focus(h.category, h.monitoring_status))),
                  key=lambda h: h.household_id)


def to_open(period: Period, households: Iterable[HouseholdRow], existing: Iterable[str],
            county: str | None = None) -> list[NewTask]:
    """The tasks to open for `period`: one per household screened that has none for the period yet."""
    have = set(existing)
    return [NewTask(period.label, period.kind, h.household_id, h.village_code, township_of(h.village_code))
            for h in screened(period.kind, households, county) if h.household_id not in have]


# --- what a cadre visit closes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskState:
    """A task of the visited household for a period the visit's day lies in."""

    id: int
    status: str  # OPEN or CLOSED
    closing_event_id: str | None


class VisitOutcome(StrEnum):
    """What a cadre-visit report did (the `outcome` label of povwatch_screening_visits_total)."""

    CLOSED = "closed"                        # it closed at least one open task
    DUPLICATE = "duplicate"                  # redelivered: nothing open, and it closed one of the tasks before
    ALREADY_CLOSED = "already_closed"        # the household's tasks for that day were closed already (another
                                             # visit, or by hand on the desk)
    NO_OPEN_TASK = "no_open_task"            # a known household without a task for the day (outside every
                                             # period opened for it)
    UNKNOWN_HOUSEHOLD = "unknown_household"  # neither household_id nor head_person_key is in the case DB's roster
    UNDECODABLE = "undecodable"              # not an IntakeReport record (logged, skipped)


@dataclass(frozen=True)
class VisitDecision:
    outcome: VisitOutcome
    close: tuple[int, ...] = ()  # the ids of the tasks to close


def decide_visit(event_id: str, household_known: bool, tasks: Sequence[TaskState]) -> VisitDecision:
    """One report for a household: close every OPEN task of the periods its day lies in (a visit in Q4 is also
    the year's visit). Idempotent: once they are closed, the same report again (its event id on one of them) is
    a DUPLICATE and changes nothing; a task opened after its first delivery is closed by it too."""
    if not household_known:
        return VisitDecision(VisitOutcome.UNKNOWN_HOUSEHOLD)
    if not tasks:
        return VisitDecision(VisitOutcome.NO_OPEN_TASK)
    to_close = tuple(sorted(t.id for t in tasks if t.status == "OPEN"))
    if to_close:
        return VisitDecision(VisitOutcome.CLOSED, to_close)
    if any(t.closing_event_id == event_id for t in tasks):
        return VisitDecision(VisitOutcome.DUPLICATE)
    return VisitDecision(VisitOutcome.ALREADY_CLOSED)


# --- coverage ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CoverageLine:
    township: str  # 9 digits, or "" for the total
    open: int
    closed: int

    @property
    def tasks(self) -> int:
        return self.open + self.closed

    @property
    def percent_closed(self) -> Decimal | None:
        """closed / tasks x 100, to one decimal (half up), but never 100.0 while a task is open (1 open of 2,000
        is 99.9, not a finished screening); None without tasks."""
        if self.tasks == 0:
            return None
        percent = (Decimal(self.closed * 100) / Decimal(self.tasks)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        return Decimal("99.9") if percent == 100 and self.closed < self.tasks else percent


@dataclass(frozen=True)
class Coverage:
    period: Period
    lines: tuple[CoverageLine, ...]  # by township code
    total: CoverageLine


def coverage(period: Period, rows: Iterable[tuple[str, str]]) -> Coverage:
    """(township_code, status) of each task of `period` -> open, closed and % closed per township, and the total."""
    counts: dict[str, Counter[str]] = {}
    for township, status in rows:
        if status not in ("OPEN", "CLOSED"):
            raise ValueError(f"a screening task's status is OPEN or CLOSED, not {status!r}")
        counts.setdefault(township, Counter())[status] += 1
    lines = tuple(CoverageLine(t, c["OPEN"], c["CLOSED"]) for t, c in sorted(counts.items()))
    total = CoverageLine("", sum(line.open for line in lines), sum(line.closed for line in lines))
    return Coverage(period, lines, total)


def _percent(line: CoverageLine) -> str:
    p = line.percent_closed
    return "—" if p is None else f"{p}%"


def render_coverage(c: Coverage) -> str:
    """The table of `povwatch screening status`."""
    p = c.period
    head = f"{p.kind} screening {p.label} ({p.start} to {p.end})"
    if not c.lines:
        return f"{head}: no tasks (povwatch screening open {p.kind} --period {p.label})"
    rows = [(line.township, str(line.open), str(line.closed), _percent(line)) for line in c.lines]
    rows.append(("total", str(c.total.open), str(c.total.closed), _percent(c.total)))
    return head + "\n" + render_table(("township", "open", "closed", "% closed"), rows, right_from=1,
                                       rules_before={len(rows) - 1}, indent="  ")


def _line_json(line: CoverageLine) -> dict[str, object]:
    p = line.percent_closed
    return {"open": line.open, "closed": line.closed, "tasks": line.tasks,
            "percent_closed": None if p is None else float(p)}


def coverage_json(items: Sequence[Coverage]) -> str:
    return json.dumps({"periods": [
        {"period": c.period.label, "kind": c.period.kind.value, "start": c.period.start.isoformat(),
         "end": c.period.end.isoformat(),
         "townships": [{"township": line.township, **_line_json(line)} for line in c.lines],
         "total": _line_json(c.total)} for c in items]}, ensure_ascii=False, indent=2)
