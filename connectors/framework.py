"""The connector framework: department file -> validated records -> Avro events on Kafka.

    read_table(path)            connectors.readers: header + text rows (CSV in any of the encodings, XLSX), streamed
    RowSource                   connectors.sources: a file or a SQL batch, as header + numbered text rows
    bind_headers(spec, header)  which column holds which field (Chinese label, English alias, unit suffix)
    validate(spec, raw, today)  RawRow -> ValidRecord | Rejection (every reason, not just the first)
    RowHandler.handle(record)   ValidRecord -> Accepted(messages) | reasons     (what the feed publishes)
    run_rows(...)               drives the above over any RowSource, publishes, dead-letters rejects, returns a
                                Summary; checkpoints after acknowledgement and resumes without loss or repeat
    run_file(...)               run_rows over one file

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
from collections.abc import Awaitable, Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from connectors.digests import DigestSet
from connectors.fields import FieldError, Parser, clean, mask_free_text
from connectors.progress import Progress
from connectors.pseudonym import Pseudonymiser
from connectors.readers import OVERSIZED
from connectors.sources import RowSource, file_source
from plumbing.clock import Clock
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
    "Resume",
    "MAX_REJECTS_LISTED",
    "bind_headers",
    "bind_source",
    "validate",
    "redacted_fields",
    "event_id_of",
    "occurred_on",
    "run_rows",
    "run_file",
]

CONNECTOR_VERSION = "0.1.0"
Check = Callable[[Mapping[str, Any]], "str | None"]
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
    occurred_at: str = ""  # the field the event is dated by: a Date, or a Year (dated on its 1 January)
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
    """Where messages go. plumbing.kafka_io.KafkaPublisher in production, an in-memory one in tests."""

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


def occurred_on(value: dt.date | int) -> dt.date:
    """The event's date from the field a feed is dated by: a date, or a year (年度, for the feeds that report
    a year and no day: the year's first day, never in the future)."""
    return dt.date(value, 1, 1) if isinstance(value, int) else value


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
            "occurred_at": occurred_on(record.values[self.spec.occurred_at]),
            "ingested_at": self._clock(),
            "source": {**source, "key_id": self._pseudonymiser.key_id},
            **body,
        }
        value = self._codec.encode(self.spec.schema, event)
        key = body["person_key"] if body["person_key"] is not None else body["village_code"]
        return Accepted(eid, (Message(self.spec.topic, key.encode("ascii"), value),))

    def finish(self) -> list[Message]:
        return []


MAX_REJECTS_LISTED = 1000  # a summary lists the first rejected rows; it counts them all (dlq.<dept> has every one)


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
    rejects: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)  # the first MAX_REJECTS_LISTED

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
            "rejects_not_listed": self.rejected - len(self.rejects),
        }


@dataclass(frozen=True)
class Resume:
    """Where an interrupted run of the same source stopped. Rows up to `after_row` were acknowledged by the
    broker: they are read again (so the counts and the duplicate detection are those of one whole run) but not
    sent. `already_sent` holds what reached the topics after that checkpoint (event identities and dead-letter
    keys, read back from the topics): not sent again either. So a resumed run neither loses nor repeats."""

    after_row: int = 0
    already_sent: Container[str] = frozenset()


def _raw_rows(bound: dict[int, Column], rows: Iterator[tuple[int, list[str]]],
              problems: dict[int, list[str]]) -> Iterator[RawRow | int]:
    """RawRow per data row; a blank line yields its row number instead. `problems` is filled by the reader as
    it yields each row, and emptied here as the rows are taken (it never holds more than the current row)."""
    for number, cells in rows:
        found = tuple(problems.pop(number, ()))
        if not found and not any(c.strip() for c in cells):
            yield number
            continue
        yield RawRow(number, {col.field: (cells[i] if i < len(cells) else "") for i, col in bound.items()}, found)


def bind_source(spec: FeedSpec, source: RowSource) -> dict[int, Column]:
    try:
        return bind_headers(spec, source.headers)
    except InputFileError as exc:
        source.close()
        raise InputFileError(f"{source.origin}: {exc}") from None


async def run_rows(
    spec: FeedSpec,
    source: RowSource,
    handler: RowHandler,
    publisher: Publisher,
    *,
    codec: Codec,
    clock: Clock,
    stage: str = "connector",
    on_reject: Callable[[RawRow], None] | None = None,
    zone: dt.tzinfo = DEFAULT_ZONE,
    resume: Resume = Resume(),
    on_acked: Callable[[int], Awaitable[None]] | None = None,
    ack_every: int = 5000,
    on_progress: Callable[[Summary], None] | None = None,
    bound: dict[int, Column] | None = None,
) -> Summary:
    """The one loop of every source (a file, a SQL batch): validate each row, publish its event or dead-letter
    it, count. Memory stays flat whatever the number of rows: duplicates are detected on 16-byte digests
    (connectors.digests), the summary lists at most MAX_REJECTS_LISTED rejects. Every `ack_every` rows sent,
    and at the end, the publisher is flushed (the broker has acknowledged everything) and `on_acked(row)` is
    told the last row done, so a checkpoint is written only after acknowledgement. `on_progress(summary)` is
    called every 1,000 rows and at the end."""
    if bound is None:
        bound = bind_source(spec, source)
    today = local_today(clock(), zone)
    summary = Summary(spec.department, spec.feed, source.origin, source.encoding)
    seen = DigestSet()
    since_ack, last_row = 0, resume.after_row
    try:
        for item in _raw_rows(bound, source.rows, source.problems):
            if isinstance(item, int):
                summary.blank_lines += 1
                continue
            summary.read += 1
            live = item.row > resume.after_row
            source_record = {"department": spec.department, "feed": spec.feed, "origin": source.origin_of(item.row),
                             "row": item.row, "connector_version": CONNECTOR_VERSION}
            outcome: ValidRecord | Rejection | Accepted | list[str] = validate(spec, item, today)
            if isinstance(outcome, ValidRecord):
                outcome = handler.handle(outcome, source_record)
            if isinstance(outcome, Accepted):
                if not seen.add(outcome.identity):
                    summary.duplicates += 1
                else:
                    summary.published += 1
                    if live and outcome.identity not in resume.already_sent:
                        for message in outcome.messages:
                            await publisher.send(message.topic, message.key, message.value)
            else:
                names = _row_names(spec, item)
                reasons = tuple(_scrub(r, names) for r in (outcome.reasons if isinstance(outcome, Rejection)
                                                           else outcome))
                summary.rejected += 1
                if len(summary.rejects) < MAX_REJECTS_LISTED:
                    summary.rejects.append((item.row, reasons))
                if live:
                    letter = row_dead_letter(source_record, reasons, redacted_fields(spec, item), stage, clock())
                    if letter.key.decode() not in resume.already_sent:
                        await publisher.send(spec.dlq, letter.key, letter.encode(codec))
                if on_reject is not None:
                    on_reject(item)
            if live:
                since_ack += 1
                last_row = item.row
                if on_acked is not None and since_ack >= ack_every:
                    await publisher.flush()
                    await on_acked(last_row)
                    since_ack = 0
            if on_progress is not None and summary.read % 1000 == 0:
                on_progress(summary)
    finally:
        source.close()
    for message in handler.finish():
        await publisher.send(message.topic, message.key, message.value)
        summary.extra_messages += 1
    await publisher.flush()
    if on_acked is not None:
        await on_acked(last_row)
    if on_progress is not None:
        on_progress(summary)
    return summary


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
    progress: bool | None = False,
) -> Summary:
    """Process one file, read as a stream (run_rows). The file is opened and its header checked before the
    publisher is started, so a bad file fails fast without a broker. `publisher_factory()` returns an async
    context manager -> Publisher. `on_reject(raw)` is told of every rejected row (the roster keeps a rejected
    person it can identify). `zone`: the time zone whose current date is "today" for the future-date check.
    `progress`: rows, rate and ETA on stderr (None: only when stderr is a terminal; False: never)."""
    source = file_source(path)
    bound = bind_source(spec, source)
    meter = Progress(path.name, source.position, enabled=progress)
    try:
        async with publisher_factory() as publisher:
            return await run_rows(spec, source, handler, publisher, codec=codec, clock=clock, stage=stage,
                                  on_reject=on_reject, zone=zone, bound=bound,
                                  on_progress=lambda s: meter.update(s.read))
    finally:
        source.close()
        meter.close()
