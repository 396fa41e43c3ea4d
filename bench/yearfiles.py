"""A year of department files with realistic values, fast: the rows of bench/sweep.py.

The demo's generator (services/demo/feeds.py) makes its rows to cover every rule: it cycles through every
enumeration value and checks each row, so nearly half of its events raise an alert, and it redoes per file what
could be done once (the eligible subjects among all persons). This writer keeps the demo's row maker (the same
ID numbers, names, regions, dates within the last 18 months in four spellings, product checks) and the same bad
rows, and adds what a department's real export looks like (bench/year.py `PROFILES`):

    benign rows     the row maker's variant with the example's amounts and counts, then one of the profile's benign
                    values per named field, every amount times one factor of 0.8-1.25 (a feed with a per-capita
                    check: the per-capita amount times the factor, the totals times the household size)
    risky rows      a share of each file (the profile's): the demo's full variation with one of the risky values per
                    named field, checked by `validate` and drawn again (less varied) until valid
    bad rows        one per kind the feed allows (BAD_KINDS, at most 4 a file), as the demo writes them

Every row is checked by the feed's `validate` (so rejected = the bad rows written, exactly) and the file holds no
two rows with the same identity. Rows are written as CSV (UTF-8) straight to the file, one file per call;
`eligible` subjects are computed once per process (`Population`).
"""
from __future__ import annotations

import csv
import datetime as dt
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from year import PROFILES, Profile

from connectors.fields import Amount, parse_amount
from connectors.framework import FeedSpec, RawRow, ValidRecord, validate
from services.demo.feeds import BAD_KINDS, Household, RowMaker, Subject, as_text, row_identity, spoil
from services.monitor.rules import age_at

__all__ = ["Population", "Written", "write_year_file", "BAD_PER_FILE"]

BAD_PER_FILE = 4
_CENT = Decimal("0.01")
_NO_PROFILE = Profile(0.0, {}, {}, "no value makes a row risky on its own")


class Population:
    """The subjects a feed draws from, computed once: adults, pupils (6-22), households, villages."""

    def __init__(self, households: list[Household], today: dt.date) -> None:
        self.households = households
        self.adults: list[Subject] = []
        self.students: list[Subject] = []
        for h in households:
            for m in h.members:
                age = age_at(m.birth, today)
                if age >= 18:
                    self.adults.append(Subject(h.village, h, m))
                if 6 <= age <= 22:
                    self.students.append(Subject(h.village, h, m))
        self.by_village: dict[str, list[Household]] = {}
        for h in households:
            self.by_village.setdefault(h.village, []).append(h)
        self.villages = sorted(self.by_village)

    def subjects(self, spec: FeedSpec, count: int, rng: random.Random, risky: list[bool]) -> list[Subject]:
        """`count` subjects, distinct where the feed's link allows (as the demo draws them); for a village feed
        with an ID column, a household named in one row in two (risky rows always name one)."""
        link = spec.wire.link
        if link == "village":
            if not any(c.sensitive == "id" for c in spec.columns):
                return [Subject(v, None, None) for v in rng.sample(self.villages, min(count, len(self.villages)))]
            out = []
            for i in range(count):
                village = rng.choice(self.villages)
                named = rng.choice(self.by_village[village]) if risky[i] or rng.random() < 0.5 else None
                out.append(Subject(village, named, named.head if named else None))
            return out
        if link == "household":
            chosen = rng.sample(self.households, min(count, len(self.households)))
            return [Subject(h.village, h, h.head) for h in chosen]
        student = any(c.sensitive == "id" and c.label.startswith("学生") for c in spec.columns)
        pool = self.students if student else self.adults
        return rng.sample(pool, min(count, len(pool)))


@dataclass(frozen=True)
class Written:
    rows: int  # data rows written
    bad_rows: int  # of which invalid on purpose
    risky_rows: int  # of the valid ones, drawn as risky


def _amount_text(amount: Decimal, example: str) -> str:
    amount = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    if "," in example:
        return f"{amount:,.2f}"
    return f"{amount:.0f}" if amount == amount.to_integral() else f"{amount:.2f}"


class _Maker:
    """One feed's rows: benign, risky, bad."""

    def __init__(self, spec: FeedSpec, rng: random.Random, today: dt.date) -> None:
        self.spec, self.rng, self.today = spec, rng, today
        self.maker = RowMaker(spec, rng, today)
        self.profile = PROFILES.get((spec.department, spec.feed), _NO_PROFILE)
        self.amounts = [c.field for c in spec.columns if isinstance(c.parser, Amount)
                        and spec.example.get(c.field) and c.field not in self.profile.benign_values]
        self.products = self.maker.products
        self.example_size = {size: int(spec.example[size]) for _, size, _ in self.products}

    def _valid(self, cells: dict[str, str | dt.date]) -> bool:
        return isinstance(validate(self.spec, RawRow(2, as_text(cells)), self.today), ValidRecord)

    def benign(self, index: int, subject: Subject) -> dict[str, str | dt.date] | None:
        for attempt in range(40):  # a declared cross-field check may refuse a variant: draw again, less varied
            cells = self._benign(index, subject, 1 if attempt < 20 else 2)
            if self._valid(cells):
                return cells
        return None

    def _benign(self, index: int, subject: Subject, level: int) -> dict[str, str | dt.date]:
        rng = self.rng
        cells = self.maker.row(index, subject, level, cells_as_dates=False)
        for name, values in self.profile.benign_values.items():
            cells[name] = rng.choice(values)
        factor = Decimal(rng.randint(80, 125)) / 100
        for _, size, _ in self.products:  # the per-capita amount x factor, totals x the household size
            factor *= Decimal(int(str(cells[size]))) / self.example_size[size]
        for name in self.amounts:
            if cells.get(name):
                cells[name] = _amount_text(parse_amount(str(cells[name])) * factor, self.spec.example[name])
        for per_capita, size, total in self.products:
            cells[per_capita] = _amount_text(parse_amount(str(cells[total])) / int(str(cells[size])),
                                             self.spec.example.get(per_capita, ""))
        return cells

    def risky(self, index: int, subject: Subject) -> dict[str, str | dt.date] | None:
        for attempt in range(60):
            cells = self.maker.row(index, subject, 0 if attempt < 20 else 1 if attempt < 40 else 2,
                                   cells_as_dates=False)
            for name, values in self.profile.risky_values.items():
                cells[name] = self.rng.choice(values)
            if self._valid(cells):
                return cells
        return None


def write_year_file(spec: FeedSpec, population: Population, path: Path, *, count: int, seed: str,
                    today: dt.date) -> Written:
    """The feed's file (CSV, UTF-8): about `count` valid rows (fewer if there are fewer subjects), a share of
    them risky (its profile), and up to BAD_PER_FILE bad rows mixed in."""
    rng = random.Random(seed)
    make = _Maker(spec, rng, today)
    share = make.profile.risky
    flags = [rng.random() < share for _ in range(count + BAD_PER_FILE)]
    subjects = population.subjects(spec, count + BAD_PER_FILE, rng, flags)
    bad = min(BAD_PER_FILE, len(subjects) // 2)
    check_identity = spec.wire.link == "village"  # the only feeds whose subjects may repeat in a file
    seen: set[tuple[str, ...]] = set()
    rows: list[dict[str, str | dt.date]] = []
    risky_rows = 0
    for index, subject in enumerate(subjects[:len(subjects) - bad]):
        for _ in range(20):
            cells = make.risky(index, subject) if flags[index] else make.benign(index, subject)
            if cells is None:
                raise AssertionError(f"{spec.department} {spec.feed}: no valid row for row {index}")
            if check_identity:
                identity = row_identity(spec, cells)
                if identity in seen:
                    continue
                seen.add(identity)
            rows.append(cells)
            risky_rows += flags[index]
            break
    kinds = list(BAD_KINDS)
    spoiled = 0
    for subject in subjects[len(subjects) - bad:]:
        while kinds:
            cells = make.maker.row(len(rows), subject, 2, cells_as_dates=False)
            if spoil(spec, cells, kinds.pop(0)):
                if make._valid(cells):
                    raise AssertionError(f"{spec.feed}: a bad row passes validation")
                rows.insert(rng.randrange(len(rows) + 1), cells)
                spoiled += 1
                break
    fields = [col.field for col in spec.columns]
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([col.label for col in spec.columns])
        writer.writerows([[str(cells.get(f, "")) for f in fields] for cells in rows])
    return Written(len(rows), spoiled, risky_rows)
