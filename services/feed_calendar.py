"""When each department feed is expected (`deploy/feeds-calendar.toml`), and whether it is overdue: pure logic.

The calendar names, per department and feed of the catalogue, one cadence:

    daily               an event every day
    weekly              an event every 7 days
    monthly by N        each calendar month's file by its day N (1-28): the plan's monthly dispatch, late each month
    quarterly           each quarter's file by the quarter's last day (the plan's quarterly screening month)
    yearly by MM-DD     each year's file by that date

A delivery counts for the period it arrives in (the day, the week from it, the calendar month, quarter or year), so
the next one is due by the deadline of the following period: last seen 2026-11-20 on "monthly by 25" -> due
2026-12-25; a late November file on 2026-11-27 still counts as November's (it was overdue from 26 to 27
November). A feed is overdue when today is past its next due date; a feed never seen has no due date and is listed
as never seen, and overdue once its first deadline after the calendar's `start` (the day the hub went live, a
top-level TOML date) has passed; without `start` a feed never seen is listed but not overdue.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from plumbing.toml_config import read_toml
from schemas.errors import ConfigError

__all__ = ["Cadence", "FeedCalendar", "FeedStatus", "parse_cadence", "load_calendar", "status_of"]

_MONTHLY = re.compile(r"monthly by (\d{1,2})")
_YEARLY = re.compile(r"yearly by (\d{2})-(\d{2})")


@dataclass(frozen=True)
class Cadence:
    kind: str  # daily, weekly, monthly, quarterly, yearly
    day: int = 0  # monthly: the day of the month
    month: int = 0  # yearly: the deadline's month and day
    text: str = ""

    def next_due(self, last: dt.date) -> dt.date:
        """The deadline of the period after the one `last` falls in."""
        if self.kind == "daily":
            return last + dt.timedelta(days=1)
        if self.kind == "weekly":
            return last + dt.timedelta(days=7)
        if self.kind == "monthly":
            year, month = (last.year + 1, 1) if last.month == 12 else (last.year, last.month + 1)
            return dt.date(year, month, self.day)
        if self.kind == "quarterly":
            quarter_end = ((last.month - 1) // 3 + 1) * 3  # 3, 6, 9, 12
            year, month = (last.year + 1, 3) if quarter_end == 12 else (last.year, quarter_end + 3)
            return dt.date(year, month, calendar.monthrange(year, month)[1])
        return dt.date(last.year + 1, self.month, self.day)  # yearly

    def first_due(self, since: dt.date) -> dt.date:
        """For a feed never seen: when its first delivery was due, counting from `since` (the hub's start)."""
        if self.kind in ("daily", "weekly"):
            return self.next_due(since)
        if self.kind == "monthly":
            this_month = dt.date(since.year, since.month, self.day)
            return this_month if this_month >= since else self.next_due(since)
        if self.kind == "quarterly":
            quarter_end = ((since.month - 1) // 3 + 1) * 3
            return dt.date(since.year, quarter_end, calendar.monthrange(since.year, quarter_end)[1])
        this_year = dt.date(since.year, self.month, self.day)
        return this_year if this_year >= since else self.next_due(since)


def parse_cadence(text: str, where: str) -> Cadence:
    """A cadence from the calendar's words; ConfigError naming `where` when it is not one."""
    words = " ".join(str(text).split()).lower()
    if words in ("daily", "weekly", "quarterly"):
        return Cadence(words, text=words)
    if m := _MONTHLY.fullmatch(words):
        day = int(m.group(1))
        if not 1 <= day <= 28:
            raise ConfigError(f"{where}: 'monthly by {day}': the day must be 1 to 28 (every month has it)")
        return Cadence("monthly", day=day, text=words)
    if m := _YEARLY.fullmatch(words):
        month, day = int(m.group(1)), int(m.group(2))
        try:
            dt.date(2025, month, day)  # not a leap year: 02-29 is refused
        except ValueError:
            raise ConfigError(f"{where}: 'yearly by {m.group(1)}-{m.group(2)}' is not a date of every year") from None
        return Cadence("yearly", day=day, month=month, text=words)
    raise ConfigError(f"{where}: {text!r} is not a cadence (daily, weekly, 'monthly by N', quarterly, "
                      f"'yearly by MM-DD')")


@dataclass(frozen=True)
class FeedCalendar:
    cadences: Mapping[tuple[str, str], Cadence]  # (department, feed) -> cadence
    start: dt.date | None = None  # the day the hub went live: feeds never seen count from it

    def cadence(self, department: str, feed: str) -> Cadence:
        return self.cadences[(department, feed)]


def load_calendar(path: Path, feeds: Iterable[tuple[str, str]]) -> FeedCalendar:
    """Read the calendar; every feed of `feeds` must be there and nothing else (ConfigError naming the key)."""
    if not path.is_file():
        raise ConfigError(f"{path}: feed calendar not found (POVWATCH_FEEDS_CALENDAR names it)")
    data = read_toml(path)
    wanted = set(feeds)
    cadences: dict[tuple[str, str], Cadence] = {}
    start = data.pop("start", None)
    if start is not None and (not isinstance(start, dt.date) or isinstance(start, dt.datetime)):
        raise ConfigError(f"{path}: start must be a date such as 2026-01-01 (the day the hub went live), not {start!r}")
    for department, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{department}] must be a table of feed = cadence")
        for feed, text in table.items():
            key = (department, feed)
            if key not in wanted:
                raise ConfigError(f"{path}: {department}.{feed} is not a feed of the catalogue "
                                  f"(`povwatch feeds list` names them)")
            if not isinstance(text, str):
                raise ConfigError(f"{path}: {department}.{feed} must be a string such as \"monthly by 25\"")
            cadences[key] = parse_cadence(text, f"{path}: {department}.{feed}")
    missing = sorted(wanted - set(cadences))
    if missing:
        raise ConfigError(f"{path}: no cadence for {', '.join(f'{d}.{f}' for d, f in missing)}")
    return FeedCalendar(cadences, start)


@dataclass(frozen=True)
class FeedStatus:
    department: str
    feed: str
    topic: str
    cadence: str
    last_seen: dt.datetime | None  # when povwatch last received an event of the feed, in the prefecture's zone
    due: dt.date | None  # the next delivery's deadline
    overdue: bool

    @property
    def state(self) -> str:
        if self.last_seen is None:
            return "NEVER SEEN (overdue)" if self.overdue else "never seen"
        return "OVERDUE" if self.overdue else "ok"


def status_of(department: str, feed: str, topic: str, cadence: Cadence, last_seen: dt.datetime | None,
              today: dt.date, since: dt.date | None = None) -> FeedStatus:
    """Where the feed stands on `today`; `last_seen` and `today` in the prefecture's zone. `since`: from when a
    feed never seen counts (the calendar's start)."""
    if last_seen is None:
        due = cadence.first_due(since) if since is not None else None
    else:
        due = cadence.next_due(last_seen.date())
    return FeedStatus(department, feed, topic, cadence.text, last_seen, due, due is not None and today > due)
