"""The demo's files for every catalogue feed beyond the five headline ones, and its intake requests: derived from
the declarations, with no second list of feeds or columns.

For each `FeedSpec` of `connectors.catalog.EVENT_FEEDS` that `population.py` does not write by hand, the
declared `example` row is varied once per row, column by column, by what the declaration says the column is:

    ID number (sensitive "id")   a roster member's (link person), the household head's (link household); for
                                 link village the ID column is filled with a head of that village or left empty
    name (sensitive "name")      that person's name
    行政区划代码 (RegionCode)     the household's village (12 digits) or county (6)
    a roster column's label      the roster's value: 性别, 与户主关系, 家庭人口数 (connectors.departments.bureau)
    Date / DueDate               every date moved by the same number of days, so that the event date
                                 (`occurred_at`) falls within the last 18 months and no other fact date lies
                                 ahead; written in four of the spellings of docs/feeds.md (or as an Excel date cell)
    Year                         moved by as many years as the event date
    Choice / MultiChoice         cycling through the declared labels (several joined by 、 now and then)
    Amount / Count               the example's figures scaled by one factor per row (counts varied apart)
    CreditCode                   a fresh GB 32100 code of the household's county, with its check character
    code-like Text (WX-2024-01)  numbered per row; other text as the example has it
    optional columns             now and then left empty

The feed's shared checks are honoured where the declaration says how: `product_agrees` (connectors.checks)
names its per-capita, size and total fields, and the per-capita amount is set to total / size. Every row is then
run through `connectors.framework.validate` with the declared checks: a variant that fails is drawn again,
with less variation each time (counts, then amounts and enumerations as in the example), so every good row
passes, whatever checks a declaration adds. Each file also gets a few bad rows, one per kind the feed's columns
allow (an unknown enumeration, a bad date, an ID number with a wrong check character, a missing required cell;
else a short region code or a negative amount), each checked to be rejected.

`intake_requests` does the same for the intake channels from the request models of services.intake.mapping.
Deterministic for a seed and `today`.
"""
from __future__ import annotations

import csv
import datetime as dt
import inspect
import io
import random
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from connectors.creditcode import ALPHABET, CreditCode, credit_check_character
from connectors.departments.bureau import ROSTER
from connectors.duedates import DueDate
from connectors.fields import (
    Amount,
    Choice,
    Count,
    Date,
    MultiChoice,
    RegionCode,
    Sex,
    Text,
    Year,
    parse_amount,
    parse_date,
)
from connectors.framework import Column, FeedSpec, RawRow, ValidRecord, validate
from services.monitor.rules import age_at

__all__ = ["Member", "Household", "FeedFile", "IntakeRequest", "EVENT_SPAN_DAYS", "YEAR_SPAN_DAYS", "BAD_KINDS",
           "event_day", "feed_rows",
           "write_feed_file", "write_csv", "write_xlsx", "intake_requests",
           "RowMaker", "Subject", "spoil", "row_identity", "as_text"]

EVENT_SPAN_DAYS = 540  # event dates within the last 18 months, like the headline files
YEAR_SPAN_DAYS = 700  # a feed dated by its 年度 (1 January): years whose first day is this recent
BAD_KINDS = ("enumeration", "date", "id-check", "missing", "region", "amount")  # in order of preference
_FAR = dt.date(9999, 12, 31)
_CENT = Decimal("0.01")
_CODE_LIKE = re.compile(r"^([A-Za-z0-9-]*?)(\d{2,})$")
_ROSTER_LABELS = {col.label: col.field for col in ROSTER.columns}


@dataclass(frozen=True)
class Member:
    name: str
    id_number: str
    male: bool
    relation: str
    birth: dt.date


@dataclass(frozen=True)
class Household:
    household_id: str
    village: str
    members: tuple[Member, ...]  # the head first

    @property
    def head(self) -> Member:
        return self.members[0]


@dataclass(frozen=True)
class FeedFile:
    department: str
    feed: str
    path: Path
    rows: int  # data rows written
    bad_rows: int  # of which invalid on purpose


@dataclass(frozen=True)
class IntakeRequest:
    """One POST of the demo: the channel, the JSON body and the answer it must get (a replay is answered 202
    with the first request's event_id and publishes nothing)."""

    channel: str
    body: dict[str, Any]
    expect: int
    replay: bool = False


@dataclass(frozen=True)
class _Subject:
    """Who a row is about: a member and the household (link person), the head and the household (household),
    a village and maybe a household named in it (village)."""

    village: str
    household: Household | None
    member: Member | None


def _id_columns(spec: FeedSpec) -> list[Column]:
    return [c for c in spec.columns if c.sensitive == "id"]


def _subjects(spec: FeedSpec, households: Sequence[Household], count: int, rng: random.Random,
              today: dt.date) -> list[_Subject]:
    link = spec.wire.link
    if link == "village":
        villages = sorted({h.village for h in households})
        if not _id_columns(spec):  # a row per village (e.g. one report per village and year)
            return [_Subject(v, None, None) for v in rng.sample(villages, min(count, len(villages)))]
        by_village: dict[str, list[Household]] = {}
        for h in households:
            by_village.setdefault(h.village, []).append(h)
        out = []
        for _ in range(count):
            village = rng.choice(villages)
            named = rng.choice(by_village[village]) if rng.random() < 0.5 else None
            out.append(_Subject(village, named, named.head if named else None))
        return out
    if link == "household":
        chosen = rng.sample(list(households), min(count, len(households)))
        return [_Subject(h.village, h, h.head) for h in chosen]
    student = any(c.label.startswith("学生") for c in _id_columns(spec))
    eligible = [(h, m) for h in households for m in h.members
                if (6 <= age_at(m.birth, today) <= 22 if student else age_at(m.birth, today) >= 18)]
    return [_Subject(h.village, h, m) for h, m in rng.sample(eligible, min(count, len(eligible)))]


def _example_date(text: str) -> dt.date:
    return parse_date(text, _FAR)


def event_day(value: dt.date | int) -> dt.date:
    """The date of an event from its `occurred_at` value: a date, or a year (dated on its 1 January)."""
    return dt.date(value, 1, 1) if isinstance(value, int) else value


def _date_text(day: dt.date, style: int) -> str:
    return (day.isoformat(), f"{day.year}/{day.month}/{day.day}", f"{day:%Y%m%d}",
            f"{day.year}年{day.month}月{day.day}日")[style]


def _amount_text(amount: Decimal, example: str) -> str:
    amount = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    if "," in example:
        return f"{amount:,.2f}"
    return f"{amount:.0f}" if amount == amount.to_integral() else f"{amount:.2f}"


def _credit_code(county: str, rng: random.Random) -> str:
    first17 = "9" + rng.choice("123") + county + "".join(rng.choice(ALPHABET) for _ in range(9))
    return first17 + credit_check_character(first17)


def _product_checks(spec: FeedSpec) -> list[tuple[str, str, str]]:
    """(per_capita, size, total) of every `connectors.checks.product_agrees` check the feed declares."""
    found = []
    for check in spec.checks:
        if getattr(check, "__qualname__", "").startswith("product_agrees."):
            names = inspect.getclosurevars(check).nonlocals
            found.append((str(names["per_capita"]), str(names["size"]), str(names["total"])))
    return found


def _roster_value(field: str, subject: _Subject) -> str | None:
    member, household = subject.member, subject.household
    if field == "sex" and member is not None:
        return "男" if member.male else "女"
    if field == "relation" and member is not None:
        return member.relation
    if field == "household_size" and household is not None:
        return str(len(household.members))
    return None


class _Variation:
    """One feed's row maker: the parsed example, and per row a variant at a given level of variation
    (0: everything varies; 1: counts as in the example; 2: amounts, counts and enumerations as in the example)."""

    def __init__(self, spec: FeedSpec, rng: random.Random, today: dt.date) -> None:
        self.spec, self.rng, self.today = spec, rng, today
        self.example = dict(spec.example)
        dated = [c for c in spec.columns if isinstance(c.parser, (Date, DueDate)) and self.example.get(c.field)]
        occurred = next(c for c in spec.columns if c.field == spec.occurred_at)
        self.by_year = isinstance(occurred.parser, Year)  # dated on 1 January of its 年度
        when = self.example[spec.occurred_at]
        self.base = dt.date(int(re.sub(r"\D", "", when)), 1, 1) if self.by_year else _example_date(when)
        self.offsets = {c.field: (_example_date(self.example[c.field]) - self.base).days for c in dated}
        ahead = [days for c in dated if isinstance(c.parser, Date) for days in (self.offsets[c.field],)]
        self.latest_offset = max([0, *ahead])
        if self.latest_offset >= EVENT_SPAN_DAYS:
            raise ValueError(f"{spec.feed}: the example's dates span more than {EVENT_SPAN_DAYS} days")
        earliest = today - dt.timedelta(days=YEAR_SPAN_DAYS)
        self.years = [year for year in range(earliest.year, today.year + 1) if earliest <= dt.date(year, 1, 1)
                      and dt.date(year, 1, 1) + dt.timedelta(days=self.latest_offset) < today]
        self.choice_shift = {c.field: rng.randrange(64) for c in spec.columns
                             if isinstance(c.parser, (Choice, MultiChoice))}
        self.products = _product_checks(spec)

    def row(self, index: int, subject: _Subject, level: int, *, cells_as_dates: bool) -> dict[str, str | dt.date]:
        rng = self.rng
        if self.by_year:
            day = dt.date(rng.choice(self.years), 1, 1)
        else:
            day = self.today - dt.timedelta(days=rng.randint(self.latest_offset + 1, EVENT_SPAN_DAYS))
        factor = Decimal(rng.randint(50, 150)) / 100 if level == 0 else Decimal(1)
        out: dict[str, str | dt.date] = {}
        for col in self.spec.columns:
            example = self.example.get(col.field, "")
            parser = col.parser
            value: str | dt.date
            if col.sensitive == "id":
                value = subject.member.id_number if subject.member else ""
            elif col.sensitive == "name":
                value = subject.member.name if subject.member else example
            elif isinstance(parser, RegionCode):
                value = subject.village[:parser.digits] if parser.digits <= 12 else example
            elif col.label in _ROSTER_LABELS and _roster_value(_ROSTER_LABELS[col.label], subject) is not None:
                value = _roster_value(_ROSTER_LABELS[col.label], subject) or ""
            elif isinstance(parser, Sex) and subject.member is not None:
                value = "男" if subject.member.male else "女"
            elif isinstance(parser, (Date, DueDate)) and col.field in self.offsets:
                moved = day + dt.timedelta(days=self.offsets[col.field])
                value = moved if cells_as_dates and rng.random() < 0.5 else _date_text(moved, rng.randrange(4))
            elif isinstance(parser, Year) and example:
                value = str(int(re.sub(r"\D", "", example)) + day.year - self.base.year)
            elif isinstance(parser, Choice) and level < 2:
                labels = list(parser.labels)
                value = labels[(index + self.choice_shift[col.field]) % len(labels)]
            elif isinstance(parser, MultiChoice) and level < 2:
                labels = list(parser.labels)
                first = (index + self.choice_shift[col.field]) % len(labels)
                picked = [labels[first]] + ([labels[(first + 1) % len(labels)]] if index % 3 == 2 else [])
                value = "、".join(picked)
            elif isinstance(parser, Amount) and example:
                value = _amount_text(parse_amount(example) * factor, example)
            elif isinstance(parser, Count) and example and level == 0:
                n = int(example)
                value = str(rng.randint(n // 2, n * 2) if n else rng.choice((0, 0, 0, 1, 2)))
            elif isinstance(parser, CreditCode) and level < 2:
                value = _credit_code(subject.village[:6], rng)
            elif isinstance(parser, Text) and (m := _CODE_LIKE.match(example)):
                value = f"{m[1]}{index + 1:0{len(m[2])}d}"
            else:
                value = example
            if not col.required and col.sensitive != "id" and level == 0 and rng.random() < 0.2:
                value = ""
            out[col.field] = value
        for per_capita, size, total in self.products:
            texts = [out.get(f) for f in (size, total)]
            if all(isinstance(t, str) and t for t in texts):
                each = parse_amount(str(texts[1])) / int(str(texts[0]))
                out[per_capita] = _amount_text(each, self.example.get(per_capita, ""))
        return out


def _as_text(cells: Mapping[str, str | dt.date]) -> dict[str, str]:
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in cells.items()}


def _identity(spec: FeedSpec, cells: Mapping[str, str | dt.date]) -> tuple[str, ...]:
    """What makes two rows the same event: every cell but the names (dates by value, whatever the spelling)."""
    text = _as_text(cells)
    out = []
    for col in spec.columns:
        value = text.get(col.field, "")
        if isinstance(col.parser, (Date, DueDate)) and value:
            value = parse_date(value, _FAR).isoformat()
        if col.sensitive != "name":
            out.append(value)
    return tuple(out)


def _spoil(spec: FeedSpec, cells: dict[str, str | dt.date], kind: str) -> bool:
    """Make the row invalid for one reason of `kind`; False when the feed has no column for it."""
    cols = spec.columns
    if kind == "enumeration":
        target = next((c for c in cols if isinstance(c.parser, (Choice, MultiChoice))), None)
        if target is None:
            return False
        cells[target.field] = "不详"
    elif kind == "date":
        target = next((c for c in cols if isinstance(c.parser, Date)), None)
        cells[target.field if target else spec.occurred_at] = "上月中旬" if target else "去年"  # else a 年度
    elif kind == "id-check":
        target = next((c for c in cols if c.sensitive == "id"), None)
        number = str(cells.get(target.field, "")) if target else ""
        if target is None or len(number) != 18:
            return False
        cells[target.field] = number[:17] + next(c for c in "0123456789X" if c != number[17])
    elif kind == "missing":
        target = next((c for c in reversed(cols) if c.required and not c.sensitive and c.field != spec.occurred_at),
                      None)
        if target is None:
            return False
        cells[target.field] = ""
    elif kind == "region":
        target = next((c for c in cols if isinstance(c.parser, RegionCode)), None)
        if target is None:
            return False
        cells[target.field] = str(cells[target.field])[:8]
    elif kind == "amount":
        target = next((c for c in cols if isinstance(c.parser, Amount) and c.required), None)
        if target is None:
            return False
        cells[target.field] = "-" + str(cells[target.field])
    return True


def feed_rows(spec: FeedSpec, households: Sequence[Household], *, count: int, rng: random.Random, today: dt.date,
              bad: int = 4, cells_as_dates: bool = False) -> tuple[list[dict[str, str | dt.date]],
                                                                   list[tuple[str, dict[str, str | dt.date]]]]:
    """`count` valid rows of the feed (fewer if there are fewer subjects), each passing `validate`, in event-date
    order; and `bad` invalid ones as (kind, row). `cells_as_dates`: some dates as date cells (for XLSX)."""
    maker = _Variation(spec, rng, today)
    subjects = _subjects(spec, households, count + bad, rng, today)
    bad = min(bad, len(subjects) // 2)
    good: list[tuple[dt.date, dict[str, str | dt.date]]] = []
    seen: set[tuple[str, ...]] = set()
    for index, subject in enumerate(subjects[:len(subjects) - bad]):
        for attempt in range(60):
            cells = maker.row(index, subject, 0 if attempt < 20 else 1 if attempt < 40 else 2,
                              cells_as_dates=cells_as_dates)
            outcome = validate(spec, RawRow(index + 2, _as_text(cells)), today)
            if isinstance(outcome, ValidRecord) and _identity(spec, cells) not in seen:
                seen.add(_identity(spec, cells))
                good.append((event_day(outcome.values[spec.occurred_at]), cells))
                break
        else:
            raise AssertionError(f"{spec.department} {spec.feed}: no valid variant of the example for row {index}")
    spoiled: list[tuple[str, dict[str, str | dt.date]]] = []
    kinds = list(BAD_KINDS)
    for subject in subjects[len(subjects) - bad:]:
        while kinds:
            kind = kinds.pop(0)
            cells = maker.row(len(good) + len(spoiled), subject, 2, cells_as_dates=False)
            if _spoil(spec, cells, kind):
                if isinstance(validate(spec, RawRow(0, _as_text(cells)), today), ValidRecord):
                    raise AssertionError(f"{spec.feed}: the {kind} bad row passes validation")
                spoiled.append((kind, cells))
                break
    good.sort(key=lambda item: item[0])
    return [cells for _, cells in good], spoiled


def write_feed_file(spec: FeedSpec, households: Sequence[Household], path: Path, *, count: int, seed: str,
                    today: dt.date, encoding: str | None, messy_headers: bool = False,
                    extra: Sequence[Mapping[str, str]] = ()) -> FeedFile:
    """Write the feed's file (CSV in `encoding`, or XLSX when it is None): its header in the declared labels, the
    valid rows in event-date order, then the `extra` rows (cells by field, each checked valid), with the bad ones
    mixed in."""
    rng = random.Random(seed)
    good, bad = feed_rows(spec, households, count=count, rng=rng, today=today, cells_as_dates=encoding is None)
    rows: list[Mapping[str, str | dt.date]] = list(good)
    for i, designed in enumerate(extra):
        checked = validate(spec, RawRow(i + 2, {col.field: designed.get(col.field, "") for col in spec.columns}),
                           today)
        if not isinstance(checked, ValidRecord):
            raise ValueError(f"{spec.feed}: a designed row is invalid: {checked}")
        rows.append(designed)
    for _, spoilt in bad:
        rows.insert(rng.randrange(len(rows) + 1), spoilt)
    header = [col.label for col in spec.columns]
    if messy_headers:  # as some exports write them: stray spaces and full-width spaces around the labels
        header = [f" {label}" if i % 3 == 0 else f"{label}\u3000" if i % 3 == 1 else label
                  for i, label in enumerate(header)]
    table = [[cells.get(col.field, "") for col in spec.columns] for cells in rows]
    if encoding is None:
        write_xlsx(path, header, table, dt.datetime.combine(today, dt.time(8)), spec.wire.title or spec.feed)
    else:
        write_csv(path, header, table, encoding)
    return FeedFile(spec.department, spec.feed, path, len(rows), len(bad))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]], encoding: str) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows([header, *rows])
    path.write_bytes(buf.getvalue().encode(encoding))


def write_xlsx(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]], stamp: dt.datetime,
               title: str) -> None:
    """One sheet; date cells formatted as dates; the bytes reproducible (no wall-clock stamps)."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None, "a new Workbook has one sheet, and it is the active one"
    ws.title = title
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
        for column, cell in enumerate(row, start=1):
            if isinstance(cell, dt.date):
                ws.cell(ws.max_row, column).number_format = "yyyy-mm-dd"
    wb.properties.creator, wb.properties.created = "povwatch demo", stamp
    raw = io.BytesIO()
    wb.save(raw)
    # openpyxl stamps "modified" and the zip entries with the wall clock: pin both so the bytes are reproducible.
    out, iso = io.BytesIO(), f"{stamp:%Y-%m-%dT%H:%M:%SZ}".encode()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + iso, data)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6]), data, zipfile.ZIP_DEFLATED)
    path.write_bytes(out.getvalue())


# --- the intake channels -------------------------------------------------------------------------------------
_SURNAMES = "王李张刘陈杨赵黄周吴马胡郭何高罗孙朱"
_GIVEN = "建国华明军伟强磊勇杰涛平刚海志文斌鹏辉芳娟霞丽艳英秀兰玉红梅"


# The row maker and its helpers, for other generators of feed rows (bench/yearfiles.py): the same objects.
RowMaker = _Variation
Subject = _Subject
spoil = _spoil
row_identity = _identity
as_text = _as_text


def intake_requests(channels: Mapping[str, type[Any]], households: Sequence[Household], *, per_channel: int,
                    rng: random.Random, today: dt.date) -> list[IntakeRequest]:
    """`per_channel` valid reports per channel, from each channel's request model (its JSON schema: the enumerated
    fields cycle through their values), about real households: two in three name the household by its head's ID
    number, one in three by its 户编号; every other one carries a request_id. Then, per channel, the first report
    with a request_id sent again (a replay: 202, same event) and one invalid body (422)."""
    out: list[IntakeRequest] = []
    for channel, model in channels.items():
        schema = model.model_json_schema()
        enums = {name: prop["enum"] for name, prop in schema["properties"].items() if "enum" in prop}
        shift = {name: rng.randrange(16) for name in enums}
        sent: list[IntakeRequest] = []
        for i, household in enumerate(rng.sample(list(households), min(per_channel, len(households)))):
            body: dict[str, Any] = {name: values[(i + shift[name]) % len(values)] for name, values in enums.items()}
            if i % 3 == 2:
                body["household_id"] = household.household_id
            else:
                body["head_id_number"] = household.head.id_number
            cadre = rng.choice(_SURNAMES) + "".join(rng.sample(_GIVEN, 2))
            reporter = household.head.name if channel == "self-declaration" else cadre
            body["reporter"] = reporter
            body["reported_on"] = (today - dt.timedelta(days=rng.randint(1, 120))).isoformat()
            risk = body.get("risk_type", "其他")
            body["description"] = (f"{reporter}反映: 该户存在{risk}方面的困难, 家庭收入较上年明显下降, 请村委会核实"
                                   + (f", 联系电话139{rng.randrange(10**8):08d}" if i % 4 == 1 else ""))
            if i % 2 == 0:
                body["request_id"] = f"demo-{channel}-{i + 1:03d}"
            sent.append(IntakeRequest(channel, body, 202))
        out += sent
        first = next((r for r in sent if "request_id" in r.body), None)
        if first is not None:
            out.append(IntakeRequest(channel, dict(first.body), 202, replay=True))
        invalid = {"risk_type": "不详", "reported_on": (today + dt.timedelta(days=3)).isoformat(), "reporter": "",
                   "description": "未注明户信息"}
        out.append(IntakeRequest(channel, invalid, 422))
    return out
