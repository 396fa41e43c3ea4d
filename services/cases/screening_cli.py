"""`povwatch screening open quarterly|annual [--period P] [--county CODE]` and
`povwatch screening status [--period P] [--county CODE] [--json]`: 集中排查 on the case DB (services/cases/screening.py
decides, services/cases/screening_store.py reads and writes). Periods: a quarter 2026Q4 or a year 2026; the default
is the one running today in POVWATCH_TIMEZONE (Asia/Shanghai). Bad input is one line, exit 2 (services.cli)."""
from __future__ import annotations

import argparse
from typing import Any

from connectors.framework import local_today
from plumbing.clock import utc_now
from services.cases.screening import (
    Coverage,
    Kind,
    Period,
    ScreeningError,
    check_county,
    coverage_json,
    current_period,
    parse_period,
    render_coverage,
)

__all__ = ["add_parser", "cmd_screening", "open_text"]


def open_text(result: Any) -> str:
    """One line: what `screening open` did (services.cases.screening_store.OpenResult)."""
    p: Period = result.period
    where = f", county {result.county}" if result.county else ""
    head = (f"{p.kind} screening {p.label} ({p.start} to {p.end}){where}: {result.households} household(s) to "
            "visit")
    before = result.already_open + result.already_closed
    there = f"{before} already opened for {p.label} ({result.already_open} open, {result.already_closed} closed)"
    if result.opened == 0:
        return f"{head}; nothing new to open: {there}"
    return f"{head}; opened {result.opened} task(s)" + (f", {there}" if before else "")


def _screening(settings: Any) -> Any:
    from services.casedb.database import open_database
    from services.cases.screening_store import Screening

    return Screening.from_settings(open_database(settings.case_db), settings)


def cmd_screening(args: argparse.Namespace, settings: Any) -> int:
    county = check_county(args.county)
    today = local_today(utc_now(), settings.zone)
    if args.action == "open":
        kind = Kind(args.kind)
        period = parse_period(args.period, kind) if args.period is not None else current_period(kind, today)
        screening = _screening(settings)
        try:
            print(open_text(screening.open(period, county=county)))
        finally:
            screening.close()
        return 0
    if args.kind is not None:
        raise ScreeningError(f"screening status takes no kind ({args.kind}); give --period 2026Q4 or --period 2026")
    # without --period: the quarter and the year running today
    periods = [parse_period(args.period)] if args.period is not None else [current_period(Kind.QUARTERLY, today),
                                                               current_period(Kind.ANNUAL, today)]
    screening = _screening(settings)
    try:
        found: list[Coverage] = [screening.coverage(p, county=county) for p in periods]
    finally:
        screening.close()
    print(coverage_json(found) if args.json else "\n\n".join(render_coverage(c) for c in found))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("screening", help="集中排查: open the quarter's or the year's screening tasks; coverage per "
                                         "township",
                       description="open quarterly: one task per focus household (UNSTABLE_LIFTED, MARGINAL, "
                                   "SUDDEN_HARDSHIP, or MONITORING); open annual: one per roster household; once "
                                   "per period. A cadre-visit report dated in the period closes a task (povwatch "
                                   "casefeed), or a township/county/bureau user on the desk (已排查). status: open, "
                                   "closed and % closed per township. Periods: 2026Q4 or 2026 (default: the one "
                                   "running today, POVWATCH_TIMEZONE).")
    p.add_argument("action", choices=["open", "status"])
    p.add_argument("kind", nargs="?", choices=[k.value for k in Kind], help="with open: quarterly or annual")
    p.add_argument("--period", help="a quarter (2026Q4) or a year (2026); default: the one running today")
    p.add_argument("--county", help="only this county, by its 6-digit code (e.g. 652722)")
    p.add_argument("--json", action="store_true", help="with status: the coverage as JSON")
    p.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace, settings: Any) -> int:
    if args.action == "open" and args.kind is None:
        raise ScreeningError("usage: povwatch screening open quarterly|annual [--period P] [--county CODE]")
    if args.action == "open" and args.json:
        raise ScreeningError("--json is for screening status")
    return cmd_screening(args, settings)
