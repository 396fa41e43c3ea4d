"""Comparison (比对) requests and answers as records: pure, no Kafka, no database.

    new_request_id()                      a fresh request id (32 hex characters)
    request_record(...)                   the povwatch.requests.ComparisonRequest record the bureau publishes
    result_event_id(request_id, key)      deterministic: one answer per request and person, however often it is sent
    result_record(...)                    the povwatch.events.ComparisonResult record a department publishes
    record_map(spec, ...)                 one record a department holds, as map<string, string> (no names, no IDs)
    summary_text(entry, records)          what was found, in Chinese, for the case worker
    RequestProgress / progress_of(...)    answered, partly answered or open, and for how long

A record map holds the feed's fields by their schema names with text values (dates ISO 8601, amounts as
written by Decimal, enumerations as their schema symbols, lists joined by "、"), plus `feed`, `origin` (the file or
table) and `row`; a row the department's own data got wrong is still reported (`problem`: its reasons), so a bad
row never turns into "nothing found".
"""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from connectors.fields import Choice, MultiChoice
from connectors.framework import FeedSpec
from schemas.catalog import ComparisonDepartment

__all__ = [
    "REQUEST_SCHEMA",
    "RESULT_SCHEMA",
    "new_request_id",
    "request_record",
    "result_event_id",
    "result_record",
    "record_map",
    "summary_text",
    "State",
    "RequestProgress",
    "progress_of",
    "duration_text",
]

REQUEST_SCHEMA = "povwatch.requests.ComparisonRequest"
RESULT_SCHEMA = "povwatch.events.ComparisonResult"
META = ("feed", "origin", "row", "problem")  # keys of a record map that are not the feed's fields


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_record(request_id: str, department: str, person_keys: Sequence[str], requested_at: dt.datetime,
                   case_id: int | None) -> dict[str, Any]:
    return {"request_id": request_id, "department": department, "person_keys": list(person_keys),
            "requested_at": requested_at, "case_id": case_id}


def result_event_id(request_id: str, person_key: str) -> str:
    return hashlib.sha256(f"comparison\x1f{request_id}\x1f{person_key}".encode()).hexdigest()[:32]


def result_record(entry: ComparisonDepartment, request_id: str, person_key: str,
                  records: Sequence[Mapping[str, str]], answered_at: dt.datetime) -> dict[str, Any]:
    """The answer for one person: found when the department holds any record of it (even a faulty row)."""
    return {"event_id": result_event_id(request_id, person_key), "request_id": request_id,
            "department": entry.department, "person_key": person_key, "found": bool(records),
            "records": [dict(r) for r in records], "summary": summary_text(entry, records),
            "answered_at": answered_at}


def _text(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return "、".join(_text(v) for v in value)
    return str(value)


def record_map(spec: FeedSpec, body: Mapping[str, Any], origin: str, row: int,
               problem: str | None = None) -> dict[str, str]:
    """One record as the department holds it. `body` is the pseudonymised record (connectors.framework
    EventHandler.body: names dropped, ID numbers replaced, free text masked); person_key is left out."""
    out = {"feed": spec.feed, "origin": origin, "row": str(row)}
    for key, value in body.items():
        if key != "person_key" and value is not None:
            out[key] = _text(value)
    if problem is not None:
        out["problem"] = problem
    return out


def _shown(spec: FeedSpec, field: str, value: str) -> str:
    """A record map's value as the department writes it: enumeration symbols back to their Chinese labels."""
    for column in spec.columns:
        if column.field == field and isinstance(column.parser, (Choice, MultiChoice)):
            labels = {symbol: label for label, symbol in column.parser.labels.items()}
            return "、".join(labels.get(part, part) for part in value.split("、"))
    return value


def _one(entry: ComparisonDepartment, record: Mapping[str, str]) -> str:
    spec = _spec(entry, record.get("feed", ""))
    if spec is None:
        return "，".join(f"{k} {v}" for k, v in record.items() if k not in META)
    labels = {c.field: c.label for c in spec.columns if c.sensitive is None}
    parts = [f"{labels[k]} {_shown(spec, k, v)}" for k, v in record.items() if k in labels]
    text = f"{spec.wire.title}：" + "，".join(parts)
    if record.get("problem"):
        text += f"（该行数据有误：{record['problem']}）"
    return text


def _spec(entry: ComparisonDepartment, feed: str) -> FeedSpec | None:
    from connectors.catalog import EVENT_FEEDS  # the declarations: imported late, they load every department

    return EVENT_FEEDS.get((entry.department, feed))


def summary_text(entry: ComparisonDepartment, records: Sequence[Mapping[str, str]]) -> str:
    """In Chinese: `{department} 未查到{what}记录` or `{department} 查到N条记录：...；...`."""
    if not records:
        return f"{entry.title}未查到该人员的{entry.what}记录"
    return f"{entry.title}查到{len(records)}条记录：" + "；".join(_one(entry, r) for r in records)


# --- how far a request is --------------------------------------------------------------------------------------
State = Literal["answered", "partly answered", "open"]


@dataclass(frozen=True)
class RequestProgress:
    request_id: str
    department: str
    case_id: int | None
    requested_by: str
    requested_at: dt.datetime
    persons: int
    answered: int  # persons asked that have an answer
    found: int  # persons asked the department holds something about
    state: State
    since: dt.timedelta  # open / partly answered: time since the request; answered: time the answers took
    last_answer_at: dt.datetime | None


def progress_of(request_id: str, department: str, case_id: int | None, requested_by: str,
                requested_at: dt.datetime, targets: Sequence[str], answers: Mapping[str, tuple[bool, dt.datetime]],
                now: dt.datetime) -> RequestProgress:
    """`targets`: the person keys asked; `answers`: person_key -> (found, received_at) of the answers stored."""
    asked = set(targets)
    got = {key: value for key, value in answers.items() if key in asked}
    last = max((at for _, at in got.values()), default=None)
    state: State = "open" if not got else "answered" if len(got) == len(asked) else "partly answered"
    since = (last - requested_at) if state == "answered" and last is not None else now - requested_at
    return RequestProgress(request_id, department, case_id, requested_by, requested_at, len(asked), len(got),
                           sum(1 for found, _ in got.values() if found), state, max(since, dt.timedelta(0)),
                           last)


def duration_text(delta: dt.timedelta) -> str:
    """`3d 4h`, `2h 5m`, `7m`, `12s`."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"
