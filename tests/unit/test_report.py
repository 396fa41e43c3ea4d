"""The report of `povwatch report` (services/cases/report.py, pure): periods and their boundaries, the previous
period and the change against it, open cases at a period's end by step and age, the county filter, the text and
CSV renderings; and the command on a real SQLite case DB (tests/casedb_behaviour.py reads the rows on both
backends)."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from services.cases.report import (
    CaseRow,
    EvidenceRow,
    Period,
    PeriodKind,
    ReportError,
    StepRow,
    compute,
    csv_rows,
    last_complete,
    local_day,
    parse_period,
    render_text,
)

M, Q, A = PeriodKind.MONTHLY, PeriodKind.QUARTERLY, PeriodKind.ANNUAL
D = dt.date
TODAY = D(2025, 7, 20)
JINGHE, BOLE = "652722", "652701"


@pytest.mark.parametrize(("period", "label", "start", "end"), [
    (Period(M, 2024, 2), "2024-02", D(2024, 2, 1), D(2024, 2, 29)),       # leap year
    (Period(M, 2025, 2), "2025-02", D(2025, 2, 1), D(2025, 2, 28)),
    (Period(M, 2025, 12), "2025-12", D(2025, 12, 1), D(2025, 12, 31)),
    (Period(Q, 2025, 1), "2025-Q1", D(2025, 1, 1), D(2025, 3, 31)),
    (Period(Q, 2025, 4), "2025-Q4", D(2025, 10, 1), D(2025, 12, 31)),
    (Period(A, 2025, 1), "2025", D(2025, 1, 1), D(2025, 12, 31)),
])
def test_period_bounds(period: Period, label: str, start: dt.date, end: dt.date) -> None:
    assert (period.label, period.start, period.end) == (label, start, end)
    assert period.contains(start) and period.contains(end)
    assert not period.contains(start - dt.timedelta(days=1)) and not period.contains(end + dt.timedelta(days=1))
    assert period.next().start == end + dt.timedelta(days=1) and period.previous().end == start - dt.timedelta(days=1)
    assert period.next().previous() == period == period.previous().next()


def test_previous_period_crosses_the_year() -> None:
    assert Period(M, 2025, 1).previous() == Period(M, 2024, 12)
    assert Period(Q, 2025, 1).previous() == Period(Q, 2024, 4)
    assert Period(A, 2025, 1).previous() == Period(A, 2024, 1)


@pytest.mark.parametrize(("kind", "today", "label"), [
    (M, D(2025, 7, 20), "2025-06"), (M, D(2025, 1, 1), "2024-12"), (M, D(2025, 3, 31), "2025-02"),
    (Q, D(2025, 7, 1), "2025-Q2"), (Q, D(2025, 2, 10), "2024-Q4"), (A, D(2025, 12, 31), "2024"),
])
def test_default_is_the_last_complete_period(kind: PeriodKind, today: dt.date, label: str) -> None:
    assert last_complete(kind, today).label == label


def test_parse_period() -> None:
    assert parse_period(M, "2025-03", TODAY) == Period(M, 2025, 3)
    assert parse_period(Q, "2025-q2", TODAY) == Period(Q, 2025, 2)
    assert parse_period(Q, " 2025-Q3 ", TODAY) == Period(Q, 2025, 3)       # the period running today
    assert parse_period(A, "2024", TODAY) == Period(A, 2024, 1)
    for kind, text, words in [(M, "2025-13", "no month 13"), (M, "2025-3", "YYYY-MM"), (M, "2025-Q1", "YYYY-MM"),
                              (Q, "2025-Q5", "YYYY-Qn"), (Q, "2025-04", "YYYY-Qn"), (A, "25", "YYYY"),
                              (M, "2025-08", "has not begun"), (A, "1999", "2000 or later")]:
        with pytest.raises(ReportError, match=words) as info:
            parse_period(kind, text, TODAY)
        assert "\n" not in str(info.value)


def test_days_are_beijing_time() -> None:
    assert local_day(dt.datetime(2025, 3, 31, 15, 59, tzinfo=dt.UTC)) == D(2025, 3, 31)
    assert local_day(dt.datetime(2025, 3, 31, 16, 0, tzinfo=dt.UTC)) == D(2025, 4, 1)


def ev(day: dt.date, county: str = JINGHE, category: str = "MARGINAL") -> EvidenceRow:
    return EvidenceRow(county=county, category=category, received_on=day)


def test_new_alerts_at_the_period_boundaries_and_the_change() -> None:
    march = Period(M, 2025, 3)
    evidence = [ev(D(2025, 2, 28)), ev(D(2025, 3, 1)), ev(D(2025, 3, 31)), ev(D(2025, 4, 1)),
                ev(D(2025, 3, 15), category="SUDDEN_HARDSHIP"), ev(D(2025, 2, 1), category="SUDDEN_HARDSHIP"),
                ev(D(2025, 2, 2), category="SUDDEN_HARDSHIP"), ev(D(2025, 1, 31))]
    report = compute(march, TODAY, cases=[], evidence=evidence, steps=[])
    lines = {line.category: line for line in report.lines}
    assert (lines["MARGINAL"].values["new_alerts"], lines["MARGINAL"].previous["new_alerts"]) == (2, 1)
    assert lines["MARGINAL"].change("new_alerts") == 1
    assert (lines["SUDDEN_HARDSHIP"].values["new_alerts"], lines["SUDDEN_HARDSHIP"].change("new_alerts")) == (1, -1)
    assert [line.category for line in report.lines] == ["MARGINAL", "SUDDEN_HARDSHIP"]   # the plan's order
    assert (report.total.values["new_alerts"], report.total.previous["new_alerts"]) == (3, 3)
    assert report.previous == Period(M, 2025, 2) and report.as_of == D(2025, 3, 31)


def step(case_id: int, name: str, day: dt.date, seq: int, household: str = "h1", county: str = JINGHE,
         category: str = "MARGINAL") -> StepRow:
    return StepRow(case_id=case_id, household_id=household, county=county, category=category, step=name,
                   on_day=day, seq=seq)


def test_households_included_and_risks_eliminated_count_households_once() -> None:
    q2 = Period(Q, 2025, 2)
    steps = [step(1, "LABEL", D(2025, 4, 1), 1), step(2, "LABEL", D(2025, 6, 30), 2),     # the same household
             step(3, "LABEL", D(2025, 5, 5), 3, household="h3"),
             step(4, "LABEL", D(2025, 3, 31), 4, household="h4"),                          # Q1
             step(1, "ANNOUNCE_LABEL", D(2025, 6, 1), 5), step(5, "APPLY", D(2025, 5, 1), 6, household="h5")]
    line = compute(q2, TODAY, cases=[], evidence=[], steps=steps).lines[0]
    assert (line.values["households_included"], line.previous["households_included"]) == (2, 1)
    assert (line.values["risks_eliminated"], line.change("risks_eliminated")) == (1, 1)


def case(case_id: int, opened: dt.date, closed: dt.date | None = None, county: str = JINGHE,
         category: str = "MARGINAL") -> CaseRow:
    return CaseRow(case_id=case_id, county=county, category=category, opened_on=opened, closed_on=closed)


def test_open_cases_at_the_period_end_by_step_and_age() -> None:
    june = Period(M, 2025, 6)                                                # ends 2025-06-30
    cases = [case(1, D(2025, 6, 1)),                                         # 29 days: under 30
             case(2, D(2025, 5, 31)),                                        # 30 days
             case(3, D(2025, 4, 1)),                                         # 90 days
             case(4, D(2025, 3, 31), closed=D(2025, 7, 2)),                  # 91 days, closed after the end: open
             case(5, D(2025, 3, 1), closed=D(2025, 6, 30)),                  # closed on the last day: not open
             case(6, D(2025, 7, 1))]                                         # opened after the end
    steps = [step(1, "APPLY", D(2025, 6, 2), 1), step(1, "PUBLIC_NOTICE", D(2025, 6, 3), 2),
             step(2, "APPLY", D(2025, 6, 10), 4), step(2, "PUBLIC_NOTICE", D(2025, 6, 10), 3),  # same day: by seq
             step(3, "APPLY", D(2025, 7, 1), 5)]                                                 # after the end
    line = compute(june, TODAY, cases=cases, evidence=[], steps=steps).lines[0]
    got = {m: v for m, v in line.values.items() if m.startswith("open") and v}
    assert got == {"open_cases": 4, "open_step_PUBLIC_NOTICE": 1, "open_step_APPLY": 1, "open_step_NONE": 2,
                   "open_age_lt30": 1, "open_age_30to90": 2, "open_age_gt90": 1}
    # at the end of May: cases 2, 3, 4, 5 open, no step yet; ages 0, 60, 61, 91
    assert {m: v for m, v in line.previous.items() if m.startswith("open") and v} == {
        "open_cases": 4, "open_step_NONE": 4, "open_age_lt30": 1, "open_age_30to90": 2, "open_age_gt90": 1}
    assert line.change("open_cases") == 0 and line.change("open_step_NONE") == -2


def test_a_running_period_counts_open_cases_as_of_today() -> None:
    july = Period(M, 2025, 7)
    report = compute(july, TODAY, cases=[case(1, D(2025, 7, 1)), case(2, D(2025, 7, 25))], evidence=[], steps=[])
    assert report.as_of == TODAY and report.total.values["open_cases"] == 1


def test_county_filter_and_categories_apart() -> None:
    march = Period(M, 2025, 3)
    evidence = [ev(D(2025, 3, 2)), ev(D(2025, 3, 3), county=BOLE), ev(D(2025, 3, 4), county=BOLE, category="VILLAGE")]
    everything = compute(march, TODAY, cases=[], evidence=evidence, steps=[])
    assert [(line.county, line.category) for line in everything.lines] == [
        (BOLE, "MARGINAL"), (BOLE, "VILLAGE"), (JINGHE, "MARGINAL")]
    only = compute(march, TODAY, cases=[case(1, D(2025, 3, 1), county=BOLE)], evidence=evidence, steps=[],
                   county=JINGHE)
    assert [(line.county, line.category) for line in only.lines] == [(JINGHE, "MARGINAL")]
    assert only.total.values["new_alerts"] == 1 and only.total.values["open_cases"] == 0
    assert compute(march, TODAY, cases=[], evidence=evidence, steps=[], county="652723").lines == ()


def test_renderings() -> None:
    march = Period(M, 2025, 3)
    report = compute(march, TODAY, cases=[case(1, D(2025, 3, 1))], evidence=[ev(D(2025, 3, 2)), ev(D(2025, 2, 2))],
                     steps=[step(1, "APPLY", D(2025, 3, 3), 1)])
    text = render_text(report)
    assert "monthly 2025-03 (2025-03-01 to 2025-03-31)" in text and "against 2025-02" in text
    assert "652722 精河县" in text and "边缘易致贫户" in text and "合计 TOTAL" in text
    assert "1 (=)" in text and "1 (+1)" in text and "申请" in text     # new alerts unchanged; one open, at APPLY
    rows = csv_rows(report)
    header = rows[0]
    assert header[:3] == ["期间 period", "上期 previous_period", "县市代码 county"]
    values = dict(zip(header, rows[1]))
    assert values["新增预警 new_alerts"] == "1" and values["上期 new_alerts_previous"] == "1"
    assert values["在办案件 open_cases"] == "1" and values["变化 open_cases_change"] == "1"
    assert values["县市 county_name"] == "精河县" and values["类别 category_name"] == "边缘易致贫户"
    assert rows[-1][2:4] == ["TOTAL", "合计"] and len({len(r) for r in rows}) == 1
    assert "(nothing in this period" in render_text(compute(march, TODAY, cases=[], evidence=[], steps=[]))


def test_the_command_on_a_case_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli import main
    from tests.casedb_behaviour import fill_report_db

    url = f"sqlite:///{tmp_path / 'cases.db'}"
    fill_report_db(url)
    monkeypatch.setenv("POVWATCH_CASE_DB", url)
    assert main(["report", "monthly", "--period", "2025-03"]) == 0
    out = capsys.readouterr().out
    assert "652722 精河县" in out and "边缘易致贫户" in out and "2 (+1)" in out     # new alerts: 2, February 1
    out_file = tmp_path / "out" / "march.csv"
    assert main(["report", "quarterly", "--period", "2025-Q1", "--county", "652722", "--csv", str(out_file)]) == 0
    assert "wrote" in capsys.readouterr().out
    raw = out_file.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")                                       # the BOM Excel looks for
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert {r[2] for r in rows[1:]} == {"652722", "TOTAL"}
    for argv, words in ([["report", "monthly", "--period", "2025/03"]], "YYYY-MM"), \
                       ([["report", "annual", "--county", "6527x2"]], "6-digit"), \
                       ([["report", "annual", "--csv", str(tmp_path)]], "directory"):
        assert main(argv[0]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
