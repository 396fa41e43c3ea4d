"""Each department feed against its calendar: the last event povwatch received on its topic, the next deadline,
overdue or not. `povwatch feeds status` prints it; the monitor exports it as `povwatch_feed_overdue`."""
from __future__ import annotations

import datetime as dt
import zoneinfo

from plumbing.kafka_io import last_record_times
from plumbing.settings import Settings
from plumbing.table import render_table
from schemas.catalog import EVENT_FEEDS
from services.feed_calendar import FeedCalendar, FeedStatus, load_calendar, status_of

__all__ = ["calendar_of", "feed_statuses", "render_statuses"]


def calendar_of(settings: Settings) -> FeedCalendar:
    """The calendar POVWATCH_FEEDS_CALENDAR names, checked against the catalogue's feeds (ConfigError)."""
    return load_calendar(settings.feeds_calendar, [(f.department, f.feed) for f in EVENT_FEEDS])


async def feed_statuses(bootstrap: str, calendar: FeedCalendar, now: dt.datetime,
                        zone: zoneinfo.ZoneInfo) -> list[FeedStatus]:
    seen = await last_record_times(bootstrap, [f.topic for f in EVENT_FEEDS])
    today = now.astimezone(zone).date()
    out = []
    for feed in EVENT_FEEDS:
        last = seen[feed.topic]
        out.append(status_of(feed.department, feed.feed, feed.topic, calendar.cadence(feed.department, feed.feed),
                             last.astimezone(zone) if last is not None else None, today, calendar.start))
    return out


def render_statuses(statuses: list[FeedStatus]) -> str:
    """The operator's table: department, feed, cadence, last event, next due, state; overdue feeds first."""
    rows = sorted(statuses, key=lambda s: (not s.overdue, s.department, s.feed))
    header = ("department", "feed", "cadence", "last event", "due by", "state")
    body = [(s.department, s.feed, s.cadence, s.last_seen.strftime("%Y-%m-%d %H:%M") if s.last_seen else "-",
             s.due.isoformat() if s.due else "-", s.state) for s in rows]
    lines = [render_table(header, body)]
    overdue = sum(s.overdue for s in statuses)
    lines.append(f"{overdue} of {len(statuses)} feeds overdue")
    return "\n".join(lines)
