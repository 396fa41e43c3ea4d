"""bench/yearfiles.py: the sweep's realistic year of files. Every valid row passes its connector's validation,
every bad row is rejected (so the sweep's counts can be exact), the risky rows are the stated share and carry the
risky values, the benign rows the benign ones; the demo's own generator is untouched (its table is tested apart)."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # bench/ is scripts, not a package

import year  # noqa: E402
import yearfiles  # noqa: E402

from connectors.catalog import EVENT_FEEDS, get_feed  # noqa: E402
from connectors.framework import RawRow, ValidRecord, bind_headers, validate  # noqa: E402
from connectors.readers import read_table  # noqa: E402
from services.demo.population import generate  # noqa: E402

pytestmark = pytest.mark.fast

TODAY = dt.date(2025, 9, 15)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> yearfiles.Population:
    from pipeline import roster_households
    from sweep import valid_roster_rows

    demo = generate(tmp_path_factory.mktemp("roster"), households=400, seed=7, today=TODAY)
    # the roster's persons the bureau's connector accepts (the demo roster has bad rows on purpose)
    return yearfiles.Population(roster_households(demo.roster, valid_roster_rows(demo.roster, TODAY)), TODAY)


def _read(department: str, feed: str, path: Path) -> tuple[list[dict[str, str]], int]:
    """The file's rows as the connector binds them, and how many it rejects."""
    spec = get_feed(department, feed)
    table = read_table(path)
    bound = bind_headers(spec, table.headers)
    rows, rejected = [], 0
    for number, cells in table.rows:
        raw = RawRow(number, {col.field: (cells[i] if i < len(cells) else "") for i, col in bound.items()})
        if isinstance(validate(spec, raw, TODAY), ValidRecord):
            rows.append(raw.cells)
        else:
            rejected += 1
    table.close()
    return rows, rejected


def test_every_feed_writes_valid_rows_and_exactly_its_bad_ones(population: yearfiles.Population,
                                                                tmp_path: Path) -> None:
    for department, feed in EVENT_FEEDS:
        path = tmp_path / f"{feed}.csv"
        made = yearfiles.write_year_file(get_feed(department, feed), population, path, count=60,
                                         seed=f"t:{feed}", today=TODAY)
        rows, rejected = _read(department, feed, path)
        assert rejected == made.bad_rows > 0, feed
        assert len(rows) + rejected == made.rows, feed
        assert made.risky_rows <= len(rows), feed


def test_benign_and_risky_rows_carry_the_profiles_values_in_the_stated_share(population: yearfiles.Population,
                                                                              tmp_path: Path) -> None:
    profile = year.PROFILES[("medical-security", "insurance")]
    path = tmp_path / "insurance.csv"
    made = yearfiles.write_year_file(get_feed("medical-security", "insurance"), population, path, count=1000,
                                     seed="share", today=TODAY)
    rows, _ = _read("medical-security", "insurance", path)
    uninsured = [r for r in rows if r["enrolment_status"] in profile.risky_values["enrolment_status"]]
    assert len(uninsured) == made.risky_rows  # risky rows carry a risky status, benign ones 参保
    assert all(r["insurance_type"] == "基本医疗保险" for r in uninsured)
    assert {r["enrolment_status"] for r in rows} - {"参保"} <= set(profile.risky_values["enrolment_status"])
    assert 0.005 <= made.risky_rows / len(rows) <= 0.05  # the stated 2 %, for 1,000 draws


def test_benign_household_incomes_stay_above_the_line_and_agree_with_their_size(
        population: yearfiles.Population, tmp_path: Path) -> None:
    path = tmp_path / "income.csv"
    spec = get_feed("statistics", "household-income")
    made = yearfiles.write_year_file(spec, population, path, count=300, seed="income", today=TODAY)
    rows, rejected = _read("statistics", "household-income", path)
    assert rejected == made.bad_rows
    below = [r for r in rows if float(r["per_capita_net_income"].replace(",", "")) < 9000]
    assert len(below) <= made.risky_rows  # only risky rows may fall below the 9,000 line
    assert len(rows) - made.risky_rows > 250


def test_a_profile_names_only_declared_fields_and_values() -> None:
    for (department, feed), profile in year.PROFILES.items():
        spec = get_feed(department, feed)
        columns = {c.field: c for c in spec.columns}
        for name, values in {**profile.benign_values, **profile.risky_values}.items():
            assert name in columns, (feed, name)
            labels = getattr(columns[name].parser, "labels", None)
            if labels is not None:
                assert set(values) <= set(labels), (feed, name)
            if "" in values:
                assert not columns[name].required, (feed, name)
    with pytest.raises(ValueError):
        year.Profile(1.5, {}, {}, "a share above one")
