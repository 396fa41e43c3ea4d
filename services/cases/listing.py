"""`povwatch cases list`: the case store's CaseViews as a terminal table or as JSON."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from plumbing.table import render_table
from services.casedb.store import CaseView

__all__ = ["render_cases_table", "cases_to_json"]


def render_cases_table(cases: Sequence[CaseView]) -> str:
    """A plain-text table, one line per case (for `povwatch cases list`)."""
    header = ("CASE", "SUBJECT", "VILLAGE", "STATUS", "SEVERITY", "ALERTS", "RULES")
    table = render_table(header, [(str(c.id), c.household_or_region, c.village_code, c.status, c.max_severity,
                                   str(len(c.evidence)), ",".join(dict.fromkeys(e.rule for e in c.evidence)))
                                  for c in cases])
    return table + ("\n(no cases)" if not cases else "")


def cases_to_json(cases: Sequence[CaseView], *, indent: int | None = 2) -> str:
    """One JSON array of case objects with nested `evidence`; Chinese kept as is, dates as ISO 8601."""
    return json.dumps([dataclasses.asdict(c) for c in cases], ensure_ascii=False, indent=indent,
                      default=lambda value: value.isoformat())  # only dates/datetimes are not JSON
