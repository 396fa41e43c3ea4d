"""The feed catalogue as a data officer sees it: `povwatch feeds list`, `povwatch feeds template`, docs/feeds.md.

Everything here is derived from the declarations (connectors/catalog.py over schemas/catalog.py): the feeds,
their topics, their columns (Chinese headers, required or not, what each accepts: `column_kind`) and checks
(`check_text`: each check's docstring) and the date that makes an event's occurred_at. A template is an empty file
with exactly the headers the connector reads: CSV in UTF-8 with a BOM (so that Excel opens it right) or XLSX.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from openpyxl import Workbook

from connectors.catalog import EVENT_FEEDS, ROSTER
from connectors.creditcode import CreditCode
from connectors.duedates import DueDate
from connectors.fields import Amount, Choice, Count, Date, IdNumber, MultiChoice, Parser, RegionCode, Sex, Text, Year
from connectors.framework import Check, Column, FeedSpec
from schemas.errors import InputFileError, UnknownFeed

__all__ = ["FeedEntry", "catalogue", "catalogue_json", "render_catalogue", "find", "write_template", "column_kind",
           "column_note", "check_text"]


@dataclass(frozen=True)
class ColumnEntry:
    label: str  # the Chinese header
    field: str  # the Avro field it fills
    required: bool


@dataclass(frozen=True)
class FeedEntry:
    department: str
    feed: str
    title: str  # the feed's Chinese name
    links_by: str  # person, household or village (schemas.catalog.Feed.link)
    rules: tuple[str, ...]  # the alerts its events can raise; () = kept as facts
    topic: str
    schema: str
    dead_letters: str
    occurred_at: str
    columns: tuple[ColumnEntry, ...]


def _entry(spec: FeedSpec) -> FeedEntry:
    return FeedEntry(spec.department, spec.feed, spec.wire.title, spec.wire.link, tuple(spec.wire.rules), spec.topic,
                     spec.schema, spec.dlq, spec.occurred_at,
                     tuple(ColumnEntry(c.label, c.field, c.required) for c in spec.columns))


def _specs() -> list[FeedSpec]:
    return [ROSTER, *EVENT_FEEDS.values()]


def catalogue() -> list[FeedEntry]:
    """The roster first, then every department feed in catalogue order."""
    return [_entry(spec) for spec in _specs()]


def catalogue_json(entries: list[FeedEntry]) -> str:
    return json.dumps([asdict(e) for e in entries], ensure_ascii=False)


_LINKS = {"person": "person (身份证号码)", "household": "household (户主身份证号码)",
          "village": "village (行政区划代码; the person or household when named)"}


def render_catalogue(entries: list[FeedEntry]) -> str:
    lines = []
    for e in entries:
        columns = " · ".join(c.label + ("" if c.required else " (可选)") for c in e.columns)
        lines.append(f"{e.department} {e.feed} {e.title}  ->  {e.topic}  (rejects: {e.dead_letters})")
        if e.topic == ROSTER.topic:
            lines.append("    the roster itself: who is monitored (the full snapshot of registry.persons/households)")
        else:
            judged = "rules: " + ", ".join(e.rules) if e.rules else "kept by the monitor as facts"
            lines.append(f"    links by {_LINKS[e.links_by]}; {judged}")
        lines.append(f"    columns: {columns}")
    lines.append(f"{len(entries)} feeds; `povwatch feeds template DEPT FEED` writes an empty file with the headers")
    return "\n".join(lines)


def find(department: str, feed: str) -> FeedSpec:
    for spec in _specs():
        if (spec.department, spec.feed) == (department, feed):
            return spec
    known = ", ".join(f"{s.department} {s.feed}" for s in _specs())
    raise UnknownFeed(f"unknown feed {department} {feed}; known feeds: {known}")


def write_template(spec: FeedSpec, path: Path, *, xlsx: bool) -> Path:
    """An empty CSV (UTF-8 with BOM) or XLSX with the feed's headers; refuses to overwrite a file."""
    if path.exists():
        raise InputFileError(f"{path} exists already; not overwritten")
    headers = [c.label for c in spec.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    if xlsx:
        book = Workbook()
        sheet = book.active
        assert sheet is not None, "a new workbook has one active sheet"
        sheet.title = f"{spec.department} {spec.feed}"[:31]
        sheet.append(headers)
        book.save(path)
    else:
        path.write_bytes(("\ufeff" + ",".join(headers) + "\r\n").encode("utf-8"))
    return path


def column_kind(parser: Parser) -> str:
    """What a column accepts, in words (docs/feeds.md); ValueError for a parser this does not know."""
    if isinstance(parser, Choice):
        return "one of " + " / ".join(parser.labels)
    if isinstance(parser, MultiChoice):
        return "one or more of " + " / ".join(parser.labels) + ", joined by `、`"
    if isinstance(parser, IdNumber):
        return "resident ID number: 18 characters, GB 11643 check character (15-digit numbers upgraded)"
    if isinstance(parser, DueDate):
        return f"date, not before 1900, at most {parser.horizon_years} years ahead"
    if isinstance(parser, Date):
        return "date, not in the future, not before 1900"
    if isinstance(parser, Amount):
        return "amount ≥ 0, two decimals"
    if isinstance(parser, Count):
        return f"whole number, 0 to {parser.maximum:,}"
    if isinstance(parser, Year):
        return f"year, {parser.minimum} to this year"
    if isinstance(parser, Sex):
        return "男 / 女 (also M / F, 1 / 2)"
    if isinstance(parser, RegionCode):
        return f"region code, {parser.digits} digits"
    if isinstance(parser, CreditCode):
        return "unified social credit code: 18 characters, GB 32100 check character"
    if isinstance(parser, Text):
        return f"text, at most {parser.max_length:,} characters"
    raise ValueError(f"no description for the parser {type(parser).__name__}: add it to connectors.describe")


def column_note(column: Column) -> str:
    """What becomes of a sensitive column before publishing ('' for the others)."""
    if column.sensitive == "id":
        return "never published: replaced by its person_key"
    if column.sensitive == "name":
        return "never published: dropped"
    return ""


def check_text(check: Check) -> str:
    """A cross-field check in words: its docstring, on one line; ValueError for a check without one."""
    doc = " ".join((check.__doc__ or "").split())
    if not doc:
        raise ValueError(f"the check {getattr(check, '__qualname__', check)!r} has no docstring to describe it")
    return doc
