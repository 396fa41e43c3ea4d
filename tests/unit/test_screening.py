"""集中排查's pure rules (services/cases/screening.py): periods and their boundaries, who gets a task, what a
cadre visit closes, coverage arithmetic and its renderings."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.cases.screening import (
    CoverageLine,
    HouseholdRow,
    Kind,
    Period,
    ScreeningError,
    TaskState,
    VisitDecision,
    VisitOutcome,
    check_county,
    coverage,
    coverage_json,
    current_period,
    decide_visit,
    is_focus,
    parse_period,
    periods_containing,
    render_coverage,
    screened,
    to_open,
)

days = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(9999, 12, 31))


# --- periods -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("2026Q4", Period(2026, 4)), ("2026q1", Period(2026, 1)), ("2026-Q2", Period(2026, 2)),
    (" 2026Q3 ", Period(2026, 3)), ("2026", Period(2026)), ("2000", Period(2000))])
def test_periods_that_parse(text: str, expected: Period) -> None:
    assert parse_period(text) == expected
    assert parse_period(text, expected.kind) == expected


@pytest.mark.parametrize(("text", "kind", "message"), [
    ("2026Q5", None, "there is no quarter 5"), ("2026Q0", None, "there is no quarter 0"),
    ("2026Q", None, "not a period"), ("26", None, "not a period"), ("", None, "not a period"),
    ("2026Q44", None, "there is no quarter 44"), ("2026-13", None, "not a period"), ("Q4", None, "not a period"),
    ("20261", None, "not a period"), ("２０２６", None, "not a period"), ("1999", None, "2000 or later"),
    ("2026Q4", Kind.ANNUAL, "is a quarter; the period of an annual screening is a year, e.g. 2026"),
    ("2026", Kind.QUARTERLY, "is a year; the period of a quarterly screening is a quarter, e.g. 2026Q4"),
    ("26", Kind.QUARTERLY, "write a quarter, e.g. 2026Q4"), ("x" * 500, Kind.ANNUAL, "write a year")])
def test_malformed_periods_are_one_line(text: str, kind: Kind | None, message: str) -> None:
    with pytest.raises(ScreeningError) as info:
        parse_period(text, kind)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize(("period", "start", "end"), [
    (Period(2026, 1), dt.date(2026, 1, 1), dt.date(2026, 3, 31)),
    (Period(2024, 1), dt.date(2024, 1, 1), dt.date(2024, 3, 31)),
    (Period(2026, 2), dt.date(2026, 4, 1), dt.date(2026, 6, 30)),
    (Period(2026, 3), dt.date(2026, 7, 1), dt.date(2026, 9, 30)),
    (Period(2026, 4), dt.date(2026, 10, 1), dt.date(2026, 12, 31)),
    (Period(2026), dt.date(2026, 1, 1), dt.date(2026, 12, 31))])
def test_period_boundaries(period: Period, start: dt.date, end: dt.date) -> None:
    assert (period.start, period.end) == (start, end)
    assert period.contains(start) and period.contains(end)
    assert not period.contains(start - dt.timedelta(days=1)) and not period.contains(end + dt.timedelta(days=1))


@given(st.integers(2000, 9999), st.one_of(st.none(), st.integers(1, 4)))
def test_a_label_parses_back_to_its_period(year: int, quarter: int | None) -> None:
    period = Period(year, quarter)
    assert parse_period(period.label) == period
    assert parse_period(period.label, period.kind) == period
    assert period.label == (f"{year}Q{quarter}" if quarter else str(year))


@given(days)
def test_every_day_lies_in_exactly_one_quarter_and_one_year(day: dt.date) -> None:
    quarter, year = current_period(Kind.QUARTERLY, day), current_period(Kind.ANNUAL, day)
    assert quarter.contains(day) and year.contains(day)
    assert quarter.start >= year.start and quarter.end <= year.end
    assert periods_containing(day) == (quarter.label, year.label)
    others = [Period(day.year, q) for q in range(1, 5) if q != quarter.quarter]
    assert not any(p.contains(day) for p in others)


@given(st.integers(2000, 9998), st.integers(1, 4))
def test_quarters_tile_the_year(year: int, q: int) -> None:
    period = Period(year, q)
    following = Period(year, q + 1) if q < 4 else Period(year + 1, 1)
    assert period.end + dt.timedelta(days=1) == following.start
    assert sum((Period(year, i).end - Period(year, i).start).days + 1 for i in range(1, 5)) == \
        (Period(year).end - Period(year).start).days + 1


@given(st.text(max_size=12))
def test_anything_else_is_refused_in_one_line_or_is_a_period(text: str) -> None:
    try:
        period = parse_period(text)
    except ScreeningError as exc:
        assert "\n" not in str(exc)
        return
    assert text.strip().replace("-", "").upper() == period.label


def test_county_codes() -> None:
    assert check_county(None) is None and check_county("652722") == "652722"
    for bad in ("65272", "6527220", "65272a", "", "６５２７２２"):
        with pytest.raises(ScreeningError, match="6-digit"):
            check_county(bad)


# --- who gets a task -----------------------------------------------------------------------------------------
HOUSEHOLDS = [
    HouseholdRow("H5", "652722100201", "ORDINARY", "NOT_INCLUDED"),
    HouseholdRow("H1", "652701100201", "UNSTABLE_LIFTED", "NOT_INCLUDED"),
    HouseholdRow("H2", "652701100202", "MARGINAL", "RISK_ELIMINATED"),
    HouseholdRow("H3", "652701200301", "SUDDEN_HARDSHIP", "NOT_INCLUDED"),
    HouseholdRow("H4", "652701200301", "ORDINARY", "MONITORING"),
    HouseholdRow("H6", "652701100201", "LIFTED", "RISK_ELIMINATED"),
]


def test_focus_households() -> None:
    assert is_focus("UNSTABLE_LIFTED", "NOT_INCLUDED") and is_focus("MARGINAL", "RISK_ELIMINATED")
    assert is_focus("SUDDEN_HARDSHIP", "NOT_INCLUDED") and is_focus("ORDINARY", "MONITORING")
    assert not is_focus("LIFTED", "RISK_ELIMINATED") and not is_focus("ORDINARY", "NOT_INCLUDED")


def test_quarterly_visits_focus_households_annual_visits_all() -> None:
    assert [h.household_id for h in screened(Kind.QUARTERLY, HOUSEHOLDS)] == ["H1", "H2", "H3", "H4"]
    assert [h.household_id for h in screened(Kind.ANNUAL, HOUSEHOLDS)] == ["H1", "H2", "H3", "H4", "H5", "H6"]
    assert [h.household_id for h in screened(Kind.ANNUAL, HOUSEHOLDS, "652722")] == ["H5"]
    assert [h.household_id for h in screened(Kind.QUARTERLY, HOUSEHOLDS, "652722")] == []


def test_tasks_open_once_per_period() -> None:
    q = Period(2026, 4)
    first = to_open(q, HOUSEHOLDS, existing=[])
    assert [(t.period, t.kind, t.household_id, t.village_code, t.township_code) for t in first] == [
        ("2026Q4", Kind.QUARTERLY, "H1", "652701100201", "652701100"),
        ("2026Q4", Kind.QUARTERLY, "H2", "652701100202", "652701100"),
        ("2026Q4", Kind.QUARTERLY, "H3", "652701200301", "652701200"),
        ("2026Q4", Kind.QUARTERLY, "H4", "652701200301", "652701200")]
    assert to_open(q, HOUSEHOLDS, existing=[t.household_id for t in first]) == []
    assert [t.household_id for t in to_open(q, HOUSEHOLDS, existing=["H1", "H3"])] == ["H2", "H4"]
    assert [t.household_id for t in to_open(Period(2026), HOUSEHOLDS, existing=["H1"], county="652701")] == [
        "H2", "H3", "H4", "H6"]


# --- what a cadre visit closes -------------------------------------------------------------------------------
def test_a_visit_closes_the_open_tasks_of_its_day() -> None:
    both = [TaskState(7, "OPEN", None), TaskState(3, "OPEN", None)]
    assert decide_visit("ev1", True, both) == VisitDecision(VisitOutcome.CLOSED, (3, 7))
    assert decide_visit("ev1", True, [TaskState(3, "CLOSED", "ev0"), TaskState(7, "OPEN", None)]) == \
        VisitDecision(VisitOutcome.CLOSED, (7,))
    assert decide_visit("ev1", True, [TaskState(3, "CLOSED", "ev1"), TaskState(7, "CLOSED", "ev1")]) == \
        VisitDecision(VisitOutcome.DUPLICATE)
    # the quarter closed by this report, the year closed by hand before it: still a redelivery
    assert decide_visit("ev1", True, [TaskState(3, "CLOSED", "ev1"), TaskState(7, "CLOSED", None)]).outcome \
        == VisitOutcome.DUPLICATE
    # redelivered after the year's task was opened: it closes that one (the visit lies in the year)
    assert decide_visit("ev1", True, [TaskState(3, "CLOSED", "ev1"), TaskState(9, "OPEN", None)]) == \
        VisitDecision(VisitOutcome.CLOSED, (9,))
    assert decide_visit("ev2", True, [TaskState(3, "CLOSED", "ev1")]) == VisitDecision(VisitOutcome.ALREADY_CLOSED)
    assert decide_visit("ev2", True, []) == VisitDecision(VisitOutcome.NO_OPEN_TASK)
    assert decide_visit("ev2", False, []) == VisitDecision(VisitOutcome.UNKNOWN_HOUSEHOLD)


# --- coverage ------------------------------------------------------------------------------------------------
def test_coverage_per_township_and_total() -> None:
    rows = [("652701100", "OPEN"), ("652701100", "CLOSED"), ("652701100", "CLOSED"), ("652701200", "OPEN"),
            ("652722100", "CLOSED")]
    c = coverage(Period(2026, 4), rows)
    assert [(line.township, line.open, line.closed, line.percent_closed) for line in c.lines] == [
        ("652701100", 1, 2, Decimal("66.7")), ("652701200", 1, 0, Decimal("0.0")),
        ("652722100", 0, 1, Decimal("100.0"))]
    assert (c.total.open, c.total.closed, c.total.tasks, c.total.percent_closed) == (2, 3, 5, Decimal("60.0"))
    text = render_coverage(c)
    assert text.splitlines()[0] == "quarterly screening 2026Q4 (2026-10-01 to 2026-12-31)"
    assert [line.split() for line in text.splitlines()[1:] if not line.strip().startswith("-")] == [
        ["township", "open", "closed", "%", "closed"], ["652701100", "1", "2", "66.7%"],
        ["652701200", "1", "0", "0.0%"], ["652722100", "0", "1", "100.0%"], ["total", "2", "3", "60.0%"]]
    data = json.loads(coverage_json([c]))["periods"][0]
    assert (data["period"], data["kind"], data["start"], data["end"]) == ("2026Q4", "quarterly", "2026-10-01",
                                                                          "2026-12-31")
    assert data["townships"][0] == {"township": "652701100", "open": 1, "closed": 2, "tasks": 3,
                                    "percent_closed": 66.7}
    assert data["total"] == {"open": 2, "closed": 3, "tasks": 5, "percent_closed": 60.0}


def test_coverage_without_tasks() -> None:
    c = coverage(Period(2026), [])
    assert c.lines == () and c.total == CoverageLine("", 0, 0) and c.total.percent_closed is None
    assert "no tasks (povwatch screening open annual --period 2026)" in render_coverage(c)
    assert json.loads(coverage_json([c]))["periods"][0]["total"]["percent_closed"] is None
    with pytest.raises(ValueError):
        coverage(Period(2026), [("652701100", "DONE")])


@given(st.integers(0, 10_000), st.integers(0, 10_000))
@example(1, 1999)  # 99.95 rounds half up to 100.0: shown 99.9, a task is still open
def test_percent_closed_is_closed_over_all_rounded_half_up(open_: int, closed: int) -> None:
    line = CoverageLine("652701100", open_, closed)
    if open_ + closed == 0:
        assert line.percent_closed is None
        return
    p = line.percent_closed
    assert p is not None and Decimal(0) <= p <= Decimal(100)
    assert abs(p - Decimal(closed * 100) / Decimal(open_ + closed)) <= Decimal("0.1")
    assert (p == 100) == (open_ == 0) and (p == 0) == (closed * 1000 < (open_ + closed) * 0.5)
