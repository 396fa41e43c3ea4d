"""The feed calendar (services/feed_calendar.py): cadences, deadlines, overdue, and deploy/feeds-calendar.toml."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import EVENT_FEEDS
from schemas.errors import ConfigError
from services.feed_calendar import load_calendar, parse_cadence, status_of
from services.feed_status import render_statuses

ROOT = Path(__file__).resolve().parents[2]
FEEDS = [(f.department, f.feed) for f in EVENT_FEEDS]
D = dt.date


@pytest.mark.parametrize("cadence,last,due", [
    ("daily", D(2026, 12, 31), D(2027, 1, 1)),
    ("weekly", D(2026, 12, 28), D(2027, 1, 4)),
    ("monthly by 25", D(2026, 11, 20), D(2026, 12, 25)),  # November's file on time: December's next
    ("monthly by 25", D(2026, 11, 27), D(2026, 12, 25)),  # November's file late: still November's
    ("monthly by 25", D(2026, 12, 3), D(2027, 1, 25)),
    ("Monthly  by 1", D(2026, 1, 31), D(2026, 2, 1)),
    ("quarterly", D(2026, 11, 30), D(2027, 3, 31)),  # Q4's delivery: Q1's next, by 31 March
    ("quarterly", D(2026, 1, 1), D(2026, 6, 30)),
    ("quarterly", D(2026, 7, 15), D(2026, 12, 31)),
    ("yearly by 03-31", D(2026, 3, 1), D(2027, 3, 31)),
    ("yearly by 03-31", D(2026, 4, 5), D(2027, 3, 31)),  # late for 2026: still 2026's
])
def test_next_due(cadence: str, last: dt.date, due: dt.date) -> None:
    assert parse_cadence(cadence, "x").next_due(last) == due


@given(st.sampled_from(["daily", "weekly", "monthly by 25", "monthly by 1", "quarterly", "yearly by 02-28",
                        "yearly by 12-31"]),
       st.dates(min_value=D(2000, 1, 1), max_value=D(2098, 12, 31)))
def test_the_next_deadline_is_after_the_delivery_and_within_two_periods(cadence: str, last: dt.date) -> None:
    c = parse_cadence(cadence, "x")
    due = c.next_due(last)
    longest = {"daily": 1, "weekly": 7, "monthly": 62, "quarterly": 183, "yearly": 731}[c.kind]
    assert last < due <= last + dt.timedelta(days=longest)
    # a later delivery never brings the deadline forward
    assert c.next_due(last + dt.timedelta(days=1)) >= due


@pytest.mark.parametrize("text,message", [
    ("hourly", "'hourly' is not a cadence"),
    ("monthly by 31", "the day must be 1 to 28"),
    ("monthly by 0", "the day must be 1 to 28"),
    ("yearly by 02-29", "not a date of every year"),
    ("yearly by 13-01", "not a date of every year"),
    ("yearly by 3-31", "is not a cadence"),
])
def test_a_bad_cadence_is_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cadence(text, "cal.toml: health.chronic-disease")
    assert str(caught.value).startswith("cal.toml: health.chronic-disease: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def _calendar_text(**overrides: str) -> str:
    lines = []
    for department in dict.fromkeys(d for d, _ in FEEDS):
        lines.append(f"[{department}]")
        lines += [f'{feed} = "{overrides.get(feed, "monthly by 25")}"' for d, feed in FEEDS if d == department]
    return "\n".join(lines) + "\n"


def test_the_calendar_must_name_every_feed_and_only_feeds(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text(_calendar_text(), encoding="utf-8")
    assert len(load_calendar(path, FEEDS).cadences) == len(FEEDS)
    path.write_text(_calendar_text().replace('hospitalization = "monthly by 25"\n', ""), encoding="utf-8")
    with pytest.raises(ConfigError, match="no cadence for medical-security.hospitalization"):
        load_calendar(path, FEEDS)
    path.write_text(_calendar_text() + '[health]\nflu = "weekly"\n', encoding="utf-8")
    with pytest.raises(ConfigError):  # TOML refuses the second [health]; a new table names no feed
        load_calendar(path, FEEDS)
    path.write_text(_calendar_text() + '[tax]\nreturns = "weekly"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="tax.returns is not a feed of the catalogue"):
        load_calendar(path, FEEDS)
    path.write_text('start = "last year"\n' + _calendar_text(), encoding="utf-8")
    with pytest.raises(ConfigError, match="start must be a date"):
        load_calendar(path, FEEDS)
    path.write_text("[health\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_calendar(path, FEEDS)
    with pytest.raises(ConfigError, match="feed calendar not found"):
        load_calendar(tmp_path / "missing.toml", FEEDS)


def test_the_shipped_calendar_covers_the_catalogue() -> None:
    calendar = load_calendar(ROOT / "deploy" / "feeds-calendar.toml", FEEDS)
    assert set(calendar.cadences) == set(FEEDS)
    assert calendar.start == D(2026, 1, 1)
    kinds = {c.kind for c in calendar.cadences.values()}
    assert {"weekly", "monthly", "quarterly", "yearly"} <= kinds


def test_overdue_after_the_deadline_not_on_it() -> None:
    weekly = parse_cadence("weekly", "x")
    seen = dt.datetime(2026, 11, 20, 10, 0)
    on_time = status_of("medical-security", "hospitalization", "t", weekly, seen, D(2026, 11, 27))
    late = status_of("medical-security", "hospitalization", "t", weekly, seen, D(2026, 11, 28))
    assert (on_time.due, on_time.overdue, on_time.state) == (D(2026, 11, 27), False, "ok")
    assert (late.overdue, late.state) == (True, "OVERDUE")


def test_a_feed_never_seen_counts_from_the_calendars_start() -> None:
    quarterly = parse_cadence("quarterly", "x")
    no_start = status_of("pboc", "deposit-loan", "t", quarterly, None, D(2026, 12, 3))
    assert (no_start.due, no_start.overdue, no_start.state) == (None, False, "never seen")
    new_hub = status_of("pboc", "deposit-loan", "t", quarterly, None, D(2026, 12, 3), since=D(2026, 11, 1))
    assert (new_hub.due, new_hub.overdue) == (D(2026, 12, 31), False)
    old_hub = status_of("pboc", "deposit-loan", "t", quarterly, None, D(2026, 12, 3), since=D(2026, 1, 1))
    assert (old_hub.due, old_hub.overdue, old_hub.state) == (D(2026, 3, 31), True, "NEVER SEEN (overdue)")
    monthly = parse_cadence("monthly by 25", "x")
    assert monthly.first_due(D(2026, 11, 10)) == D(2026, 11, 25)
    assert monthly.first_due(D(2026, 11, 26)) == D(2026, 12, 25)
    assert parse_cadence("yearly by 03-31", "x").first_due(D(2026, 1, 1)) == D(2026, 3, 31)


def test_the_table_lists_overdue_feeds_first_and_counts_them() -> None:
    weekly = parse_cadence("weekly", "x")
    statuses = [status_of("education", "dropout", "t", weekly, dt.datetime(2026, 12, 1, 9, 30), D(2026, 12, 3)),
                status_of("medical-security", "hospitalization", "t", weekly, dt.datetime(2026, 11, 1, 8, 0),
                          D(2026, 12, 3))]
    lines = render_statuses(statuses).splitlines()
    assert lines[0].split() == ["department", "feed", "cadence", "last", "event", "due", "by", "state"]
    assert lines[2].startswith("medical-security") and lines[2].endswith("OVERDUE")
    assert "2026-11-01 08:00" in lines[2] and "2026-11-08" in lines[2]
    assert lines[3].startswith("education") and lines[3].endswith("ok")
    assert lines[-1] == "1 of 2 feeds overdue"
