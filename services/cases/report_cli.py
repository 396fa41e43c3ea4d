"""`povwatch report monthly|quarterly|annual [--period P] [--county CODE] [--csv FILE]`: the report of
services/cases/report.py on the case DB, printed as a table or written as CSV (UTF-8 with a BOM, so Excel
reads the Chinese as it is)."""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
from pathlib import Path
from typing import Any

from services.cases.report import (
    LOCAL,
    PeriodKind,
    ReportError,
    compute,
    csv_rows,
    last_complete,
    parse_period,
    render_text,
)

__all__ = ["add_parser", "cmd_report"]


def _county(text: str | None) -> str | None:
    if text is None:
        return None
    if not re.fullmatch(r"\d{6}", text.strip()):
        raise ReportError(f"--county {text!r}: a county is its 6-digit division code, e.g. 652722 (精河县)")
    return text.strip()


def cmd_report(args: argparse.Namespace, settings: Any) -> int:
    from services.casedb.database import open_database
    from services.cases.report_query import load_rows

    today = dt.datetime.now(LOCAL).date()
    kind = PeriodKind(args.kind)
    period = parse_period(kind, args.period, today) if args.period else last_complete(kind, today)
    county = _county(args.county)
    out = Path(args.csv) if args.csv else None
    if out is not None and out.is_dir():
        raise ReportError(f"--csv {out}: is a directory; name a file")
    store = open_database(settings.case_db)
    try:
        cases, evidence, steps = load_rows(store, since=period.previous().start, until=period.end)
    finally:
        store.close()
    report = compute(period, today, cases=cases, evidence=evidence, steps=steps, county=county)
    if out is None:
        print(render_text(report))
        return 0
    rows = csv_rows(report)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8-sig", newline="") as handle:
            csv.writer(handle).writerows(rows)
    except OSError as exc:
        raise ReportError(f"--csv {out}: cannot write it: {exc.strerror or exc}") from None
    print(f"wrote {out} ({len(rows) - 1} rows: {period.kind} {period.label} against {report.previous.label})")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="the plan's rhythm: new alerts, households included, risks eliminated, open "
                                      "cases by step and age, per county and category, against the period before",
                       description="Periods: monthly YYYY-MM, quarterly YYYY-Qn, annual YYYY (default: the last "
                                   "complete one, Beijing time).")
    p.add_argument("kind", choices=[k.value for k in PeriodKind])
    p.add_argument("--period", help="YYYY-MM, YYYY-Qn or YYYY (default: the last complete period)")
    p.add_argument("--county", help="only this county, by its 6-digit code (e.g. 652722)")
    p.add_argument("--csv", metavar="FILE", help="write the report as CSV (UTF-8 with BOM, for Excel) instead")
    p.set_defaults(func=cmd_report)
