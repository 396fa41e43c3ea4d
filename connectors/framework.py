"""The connector framework: department file -> validated records -> Avro events on Kafka.

    read_table(path)            connectors.readers: header + text rows (CSV in any of the encodings, XLSX)
    bind_headers(spec, header)  which column holds which field (Chinese label, English alias, unit suffix)
    validate(spec, raw, today)  RawRow -> ValidRecord | Rejection (every reason, not just the first)
    RowHandler.handle(record)   ValidRecord -> Accepted(messages) | reasons     (what the feed publishes)
    run_file(...)               drives the above, publishes, dead-letters rejects, returns a Summary

A department declares a `FeedSpec` (its columns and the event schema); `EventHandler` turns any event feed's
record into one event, so most departments need no code at all. Rejections are data: they go to
`dlq.<department>` with the row number, every reason, and the row with names and ID numbers redacted.
Invariant of every Summary: read == published + rejected + duplicates (blank lines are listed apart).

A row the reader could not read cleanly (a quote that does not close on its line, a cell over the length limit:
see connectors.readers) arrives with its problems in `RawRow.problems`; it is rejected with them, its other cells
still validated for every reason. Dates are judged against today in the prefecture's time zone (`zone`,
`Asia/Shanghai` unless the caller passes another: services.ingest passes `POVWATCH_TIMEZONE`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from connectors.fields import FieldError, Parser, clean, mask_free_text
from connectors.pseudonym import Pseudonymiser
from connectors.readers import OVERSIZED, read_table
from schemas.catalog import Feed
from schemas.codec import Codec
from schemas.deadletter import row_dead_letter
from schemas.errors import InputFileError

__all__ = [
    "CONNECTOR_VERSION",
    "DEFAULT_ZONE",
    "local_today",
    "Column",
    "FeedSpec",
    "RawRow",
    "ValidRecord",
    "Rejection",
    "Message",
    "Accepted",
    "RowHandler",
    "EventHandler",
    "Publisher",
    "Summary",
    "bind_headers",
    "validate",
    "redacted_fields",
    "event_id_of",
    "run_file",
]

CONNECTOR_VERSION = "0.1.0"
Check = Callable[[Mapping[str, Any]], "str | None"]
Clock = Callable[[], dt.datetime]
DEFAULT_ZONE: dt.tzinfo = ZoneInfo("Asia/Shanghai")  # Bortala Prefecture keeps Beijing time


def local_today(now: dt.datetime, zone: dt.tzinfo = DEFAULT_ZONE) -> dt.date:
    """The date in `zone` at the instant `now` (a naive `now` is taken as UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return now.astimezone(zone).date()


@dataclass(frozen=True)
class Column:
    field: str
    label: str
    parser: Parser
    required: bool = True
    sensitive: Literal["name", "id"] | None = None


@dataclass(frozen=True)
class FeedSpec:
    """A department feed, declared: its catalogue entry (department, feed, topic, Avro record: schemas/catalog.py)
    and its columns (schema field names + Chinese labels)."""

    wire: Feed
    columns: tuple[Column, ...]
    occurred_at: str = ""
    checks: tuple[Check, ...] = ()
    # One valid row by field name, as a data officer writes it (ID numbers valid, dates in the past): the
    # generic tests run it through every check, and the demo varies it to generate the feed's files.
    example: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def department(self) -> str:
        return self.wire.department

    @property
    def feed(self) -> str:
        return self.wire.feed

    @property
    def schema(self) -> str:
        return self.wire.schema

    @property
    def topic(self) -> str:
        return self.wire.topic

    @property
    def dlq(self) -> str:
        return self.wire.dlq


@dataclass(frozen=True)
class RawRow:
    """One data row as text, by field name (only the declared columns), and what the reader found wrong with
    it (connectors.readers: an unbalanced quote, an oversized cell); a row with problems is always rejected."""

    row: int
    cells: dict[str, str]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidRecord:
    """A row whose every field parsed and passed the feed's checks; ID numbers are normalised (18 chars)."""

    row: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    row: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Message:
    """An encoded message ready for Kafka."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Accepted:
    identity: str  # rows with the same identity in one file are exact duplicates: published once
    messages: tuple[Message, ...]


class RowHandler(Protocol):
    def handle(self, record: ValidRecord, source: dict[str, Any]) -> Accepted | list[str]: ...

    def finish(self) -> list[Message]: ...


class Publisher(Protocol):
    """Where messages go. services.kafka_io.KafkaPublisher in production, an in-memory one in tests."""

    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...

    async def flush(self) -> None: ...


def _header_key(text: str) -> str:
    value = clean(text).lstrip("\ufeff").strip()
    if value.endswith("(元)"):  # NFKC has already turned （元） into (元)
        value = value[: -len("(元)")].strip()
    return value.replace(" ", "").lower()


def bind_headers(spec: FeedSpec, headers: Sequence[str]) -> dict[int, Column]:
    """Column index -> declared column; InputFileError naming every required column that is missing."""
    wanted: dict[str, Column] = {}
    for col in spec.columns:
        wanted[_header_key(col.label)] = col
        wanted[_header_key(col.field)] = col
    bound: dict[int, Column] = {}
    seen: dict[str, int] = {}
    for index, header in enumerate(headers):
        match = wanted.get(_header_key(header))
        if match is None:
            continue
        if match.field in seen:
            raise InputFileError(f"column {match.label} ({match.field}) appears twice (columns "
                                 f"{seen[match.field] + 1} and {index + 1})")
        seen[match.field] = index
        bound[index] = match
    missing = [f"{c.label} ({c.field})" for c in spec.columns if c.required and c.field not in seen]
    if missing:
        raise InputFileError(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    return bound


def validate(spec: FeedSpec, raw: RawRow, today: dt.date) -> ValidRecord | Rejection:
    values: dict[str, Any] = {}
    reasons: list[str] = list(raw.problems)
    for col in spec.columns:
        text = raw.cells.get(col.field, "")
        if text.startswith(OVERSIZED):
            continue  # the reader's problem says why; the placeholder is not the cell
        if not clean(text):
            if col.required:
                reasons.append(f"{col.field}: missing {col.label}")
            else:
                values[col.field] = None
            continue
        try:
            values[col.field] = col.parser.parse(text, today)
        except FieldError as exc:
            reasons.append(f"{col.field}: {exc}")
    if not reasons:
        for check in spec.checks:
            problem = check(values)
            if problem:
                reasons.append(problem)
    if reasons:
        return Rejection(raw.row, tuple(reasons))
    return ValidRecord(raw.row, values)


def _row_names(spec: FeedSpec, raw: RawRow) -> list[str]:
    names = (clean(raw.cells.get(c.field, "")) for c in spec.columns if c.sensitive == "name")
    return [name for name in names if name]


def _scrub(text: str, names: Sequence[str]) -> str:
    """Free text (a remark, a reason quoting a misplaced cell) may hold an ID number or the row's names."""
    return mask_free_text(text, names)


def redacted_fields(spec: FeedSpec, raw: RawRow) -> dict[str, str]:
    """The row for the dead letter: names and ID numbers never leave, free text has ID-like runs and the row's
    names masked."""
    names = _row_names(spec, raw)
    out: dict[str, str] = {}
    for col in spec.columns:
        text = raw.cells.get(col.field, "")
        if col.sensitive and clean(text):
            out[col.field] = f"<redacted {col.sensitive}>"
        else:
            out[col.field] = _scrub(text, names)
    return out


def _canonical(value: Any) -> Any:
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    return value


def event_id_of(department: str, feed: str, body: Mapping[str, Any]) -> str:
    """Deterministic id from the source (department, feed) and the normalised, pseudonymised record."""
    canonical = json.dumps({k: _canonical(v) for k, v in sorted(body.items())}, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(f"{department}\x1f{feed}\x1f{canonical}".encode()).hexdigest()[:32]


class EventHandler:
    """Any event feed: ID columns -> person_key, names dropped, free text masked, one event per row.

    The message key follows the feed's link (schemas.catalog.Feed.link): the person_key of the row's ID number
    (the person, or the household's head); for a village-level feed the person_key when its optional ID column
    is filled, else the 行政区划代码 (`village_code`), and the record's person_key is then null."""

    def __init__(self, spec: FeedSpec, *, pseudonymiser: Pseudonymiser, codec: Codec, clock: Clock) -> None:
        self.spec = spec
        self._pseudonymiser = pseudonymiser
        self._codec = codec
        self._clock = clock
        ids = [c for c in spec.columns if c.sensitive == "id"]
        if spec.wire.link == "village":
            if len(ids) > 1 or not any(c.field == "village_code" for c in spec.columns):
                raise ValueError(f"{spec.feed}: a village-level feed needs a village_code column and at most one "
                                 "ID-number column")
        elif len(ids) != 1 or not ids[0].required:
            raise ValueError(f"{spec.feed}: a {spec.wire.link}-level feed needs exactly one required ID-number column")
        self._id_field = ids[0].field if ids else None
        self._names = {c.field for c in spec.columns if c.sensitive == "name"}

    def body(self, record: ValidRecord) -> dict[str, Any]:
        id_number = record.values.get(self._id_field) if self._id_field else None
        body: dict[str, Any] = {"person_key": self._pseudonymiser.person_key(id_number) if id_number else None}
        names = [record.values[f] for f in self._names if record.values.get(f)]
        for key, value in record.values.items():
            if key == self._id_field or key in self._names:
                continue
            body[key] = _scrub(value, names) if isinstance(value, str) else value
        return body

    def handle(self, record: ValidRecord, source: dict[str, Any]) -> Accepted | list[str]:
        body = self.body(record)
        eid = event_id_of(self.spec.department, self.spec.feed, body)
        event = {
            "event_id": eid,
            "occurred_at": record.values[self.spec.occurred_at],
            "ingested_at": self._clock(),
            "source": source,
            **body,
        }
        value = self._codec.encode(self.spec.schema, event)
        key = body["person_key"] if body["person_key"] is not None else body["village_code"]
        return Accepted(eid, (Message(self.spec.topic, key.encode("ascii"), value),))

    def finish(self) -> list[Message]:
        return []


@dataclass
class Summary:
    department: str
    feed: str
    file: str
    encoding: str = ""
    read: int = 0
    published: int = 0
    rejected: int = 0
    duplicates: int = 0
    blank_lines: int = 0
    extra_messages: int = 0  # messages that are not rows (e.g. roster households)
    rejects: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.read == self.published + self.rejected + self.duplicates

    def as_dict(self) -> dict[str, Any]:
        return {
            "department": self.department, "feed": self.feed, "file": self.file, "encoding": self.encoding,
            "read": self.read, "published": self.published, "rejected": self.rejected,
            "duplicates": self.duplicates, "blank_lines": self.blank_lines,
            "extra_messages": self.extra_messages,
            "rejects": [{"row": row, "reasons": list(reasons)} for row, reasons in self.rejects],
        }


def _raw_rows(bound: dict[int, Column], rows: Iterator[tuple[int, list[str]]],
              problems: Mapping[int, list[str]]) -> Iterator[RawRow | int]:
    """RawRow per data row; a blank line yields its row number instead. `problems` is filled by the reader as
    it yields each row."""
    for number, cells in rows:
        found = tuple(problems.get(number, ()))
        if not found and not any(c.strip() for c in cells):
            yield number
            continue
        yield RawRow(number, {col.field: (cells[i] if i < len(cells) else "") for i, col in bound.items()}, found)


async def run_file(
    spec: FeedSpec,
    path: Path,
    handler: RowHandler,
    *,
    publisher_factory: Callable[[], Any],
    codec: Codec,
    clock: Clock,
    stage: str = "connector",
    on_reject: Callable[[RawRow], None] | None = None,
    zone: dt.tzinfo = DEFAULT_ZONE,
) -> Summary:
    """Process one file. The file is opened and its header checked before the publisher is started, so a bad
    file fails fast without a broker. `publisher_factory()` returns an async context manager -> Publisher.
    `on_reject(raw)` is told of every rejected row (the roster keeps a rejected person it can identify).
    `zone`: the time zone whose current date is "today" for the future-date check."""
    table = read_table(path)
    try:
        bound = bind_headers(spec, table.headers)
    except InputFileError as exc:
        raise InputFileError(f"{path.name}: {exc}") from None
    today = local_today(clock(), zone)
    summary = Summary(spec.department, spec.feed, path.name, table.encoding)
    seen: set[str] = set()
    async with publisher_factory() as publisher:
        for item in _raw_rows(bound, table.rows, table.problems):
            if isinstance(item, int):
                summary.blank_lines += 1
                continue
            summary.read += 1
            source = {"department": spec.department, "feed": spec.feed, "origin": path.name, "row": item.row,
                      "connector_version": CONNECTOR_VERSION}
            outcome: ValidRecord | Rejection | Accepted | list[str] = validate(spec, item, today)
            if isinstance(outcome, ValidRecord):
                outcome = handler.handle(outcome, source)
            if isinstance(outcome, Accepted):
                if outcome.identity in seen:
                    summary.duplicates += 1
                    continue
                seen.add(outcome.identity)
                for message in outcome.messages:
                    await publisher.send(message.topic, message.key, message.value)
                summary.published += 1
                continue
            names = _row_names(spec, item)
            reasons = tuple(_scrub(r, names) for r in (outcome.reasons if isinstance(outcome, Rejection)
                                                       else outcome))
            letter = row_dead_letter(source, reasons, redacted_fields(spec, item), stage, clock())
            await publisher.send(spec.dlq, letter.key, letter.encode(codec))
            summary.rejected += 1
            summary.rejects.append((item.row, reasons))
            if on_reject is not None:
                on_reject(item)
        for message in handler.finish():
            await publisher.send(message.topic, message.key, message.value)
            summary.extra_messages += 1
        await publisher.flush()
    return summary
