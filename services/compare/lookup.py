"""A department looks persons up in its own data: pure over rows, no Kafka, no files.

`find_persons(spec, source, wanted, ...)` reads a `RowSource` (a file or a SQL table in the layout of the feed's
declaration, docs/feeds.md) row by row, validates each row with the feed's declaration exactly as the feed's connector
does, pseudonymises its ID number with the same key, and keeps the rows whose person_key was asked for, as record
maps (services.compare.records.record_map: names dropped, ID numbers never included, free text masked). Memory
holds only the matches, whatever the size of the source.

A row the declaration rejects is still a fact about a person when its ID number is readable: it is kept with
its reasons (`problem`), so a faulty row is never answered as "nothing found". A row whose ID number itself is
unreadable cannot be anybody's and is counted in `unreadable`.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field

from connectors.fields import FieldError, clean, mask_free_text
from connectors.framework import EventHandler, FeedSpec, RawRow, ValidRecord, bind_source, validate
from connectors.pseudonym import Pseudonymiser
from connectors.sources import RowSource
from schemas.codec import default_codec
from services.compare.records import record_map

__all__ = ["Found", "find_persons"]


@dataclass
class Found:
    """The asked persons' records in one source, and how the reading went."""

    records: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # person_key -> record maps
    rows: int = 0
    rejected_kept: int = 0  # faulty rows kept for an asked person (with their reasons)
    unreadable: int = 0  # rows without a readable ID number (nobody's)


def _epoch() -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def find_persons(spec: FeedSpec, source: RowSource, wanted: Collection[str], *, pseudonymiser: Pseudonymiser,
                 today: dt.date) -> Found:
    """Every record of `source` about a person_key in `wanted`, in source order. The source is closed after."""
    handler = EventHandler(spec, pseudonymiser=pseudonymiser, codec=default_codec(), clock=_epoch)
    id_column = next(c for c in spec.columns if c.sensitive == "id")
    names = [c.field for c in spec.columns if c.sensitive == "name"]
    found = Found()
    try:
        bound = bind_source(spec, source)
        for number, cells in source.rows:
            problems = tuple(source.problems.pop(number, ()))
            if not problems and not any(c.strip() for c in cells):
                continue  # a blank line
            found.rows += 1
            raw = RawRow(number, {col.field: (cells[i] if i < len(cells) else "") for i, col in bound.items()},
                         problems)
            outcome = validate(spec, raw, today)
            if isinstance(outcome, ValidRecord):
                body = handler.body(outcome)
                key = body.get("person_key")
                if isinstance(key, str) and key in wanted:
                    found.records.setdefault(key, []).append(record_map(spec, body, source.origin_of(number),
                                                                        number))
                continue
            try:
                id18 = id_column.parser.parse(raw.cells.get(id_column.field, ""), today)
            except FieldError:
                found.unreadable += 1
                continue
            key = pseudonymiser.person_key(id18)
            if key in wanted:
                row_names = [clean(raw.cells.get(f, "")) for f in names if clean(raw.cells.get(f, ""))]
                reasons = "；".join(mask_free_text(r, row_names) for r in outcome.reasons)
                found.records.setdefault(key, []).append(
                    record_map(spec, {}, source.origin_of(number), number, problem=reasons))
                found.rejected_kept += 1
    finally:
        source.close()
    return found
