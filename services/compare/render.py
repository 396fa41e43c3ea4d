"""`povwatch compare status` as text and JSON (pure)."""
from __future__ import annotations

import json
from collections.abc import Sequence

from plumbing.table import render_table
from services.compare.records import RequestProgress, duration_text

__all__ = ["render_progress", "progress_json"]


def _case(p: RequestProgress) -> str:
    return str(p.case_id) if p.case_id is not None else "all monitored"


def render_progress(items: Sequence[RequestProgress]) -> str:
    """One line per request: FOR is how long it has been open (or partly answered), or how long the answers
    took once every person is answered."""
    header = ("REQUEST", "DEPARTMENT", "CASE", "BY", "PERSONS", "ANSWERED", "FOUND", "STATE", "FOR")
    rows = [(p.request_id, p.department, _case(p), p.requested_by, str(p.persons), str(p.answered),
             str(p.found), p.state, duration_text(p.since)) for p in items]
    return render_table(header, rows) + ("\n(no comparison requests)" if not items else "")


def progress_json(items: Sequence[RequestProgress], *, indent: int | None = 2) -> str:
    return json.dumps([{
        "request_id": p.request_id, "department": p.department, "case_id": p.case_id, "requested_by": p.requested_by,
        "requested_at": p.requested_at.isoformat(), "persons": p.persons, "answered": p.answered, "found": p.found,
        "state": p.state, "seconds": round(p.since.total_seconds(), 3),
        "last_answer_at": p.last_answer_at.isoformat() if p.last_answer_at is not None else None,
    } for p in items], ensure_ascii=False, indent=indent)
