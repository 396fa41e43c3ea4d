"""The monitor's watch on silent departments: every few minutes, each feed of the calendar against the latest
record on its topic (services/feed_status.py), exported as `povwatch_feed_overdue{department,feed}` and
`povwatch_feed_last_event_timestamp_seconds{department,feed}`; Prometheus raises PovwatchFeedOverdue on the first.

A monitor without a readable calendar says so in one log line at start and exports neither gauge; a broker that
does not answer leaves the gauges as they were until the next look."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from plumbing.settings import Settings
from schemas.errors import BrokerUnavailable, ConfigError
from services.feed_calendar import FeedCalendar
from services.feed_status import calendar_of, feed_statuses
from services.monitor import metrics

__all__ = ["watch_feeds"]

log = logging.getLogger("povwatch.monitor")


def _calendar(settings: Settings) -> FeedCalendar | None:
    try:
        return calendar_of(settings)
    except ConfigError as exc:
        log.warning("feed calendar not used, povwatch_feed_overdue not exported: %s", exc)
        return None


async def watch_feeds(settings: Settings, stopping: asyncio.Event, clock: Callable[[], dt.datetime],
                      every: float = 300.0) -> None:
    calendar = _calendar(settings)
    if calendar is None:
        return
    while not stopping.is_set():
        try:
            statuses = await feed_statuses(settings.bootstrap, calendar, clock(), settings.zone)
        except BrokerUnavailable as exc:
            log.warning("feed calendar: cannot read the feeds' latest events (%s); next look in %.0f s", exc, every)
        else:
            for s in statuses:
                metrics.FEED_OVERDUE.labels(s.department, s.feed).set(1 if s.overdue else 0)
                if s.last_seen is not None:
                    metrics.FEED_LAST_EVENT.labels(s.department, s.feed).set(s.last_seen.timestamp())
            late = [f"{s.department}/{s.feed}" for s in statuses if s.overdue]
            if late:
                log.info("feed calendar: %d feeds overdue: %s", len(late), ", ".join(late))
        try:
            await asyncio.wait_for(stopping.wait(), every)
        except TimeoutError:
            pass
