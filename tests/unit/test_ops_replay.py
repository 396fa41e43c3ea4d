"""The pure parts of `povwatch replay` and `rebuild monitor` (services/ops/replay.py): what --since means, where
each partition goes, the table printed, and which group and topics each service names."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from plumbing.settings import Settings
from schemas.errors import ConfigError
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services.ops.replay import Move, parse_since, plan, render_moves, targets

ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")


def test_since_is_local_time_unless_it_says_otherwise() -> None:
    assert parse_since("2026-12-03", ZONE) == dt.datetime(2026, 12, 3, tzinfo=ZONE)
    assert parse_since("2026-12-03T02:30", ZONE).astimezone(dt.UTC) == dt.datetime(2026, 12, 2, 18, 30, tzinfo=dt.UTC)
    assert parse_since("20261203T023000Z", ZONE) == dt.datetime(2026, 12, 3, 2, 30, tzinfo=dt.UTC)  # a backup's stamp
    assert parse_since("2026-12-03T02:30+08:00", ZONE).utcoffset() == dt.timedelta(hours=8)
    with pytest.raises(ConfigError, match="not a date"):
        parse_since("yesterday", ZONE)


def test_each_partition_goes_to_the_first_offset_at_the_time_or_the_end() -> None:
    parts = [("t", 0), ("t", 1), ("t", 2)]
    starts = {("t", 0): 0, ("t", 1): 5, ("t", 2): 0}
    ends = {("t", 0): 10, ("t", 1): 20, ("t", 2): 4}
    at_time = {("t", 0): 7, ("t", 1): 2, ("t", 2): None}  # p1: before its log start; p2: nothing since
    moves = plan("g", parts, {("t", 0): 10}, starts, ends, at_time)
    assert [(m.partition, m.committed, m.new, m.to_read) for m in moves] == [(0, 10, 7, 3), (1, None, 5, 15),
                                                                             (2, None, 4, 0)]
    from_start = plan("g", parts, {}, starts, ends, None)
    assert [m.new for m in from_start] == [0, 5, 0]


def test_the_table_totals_what_will_be_read_again() -> None:
    text = render_moves([Move("g", "alerts.household", 0, 13, 7, 13), Move("g", "alerts.household", 1, None, 0, 2)])
    assert text.splitlines()[0].split() == ["group", "topic", "partition", "committed", "new", "offset", "to", "read"]
    assert ["g", "alerts.household", "1", "-", "0", "2"] in [line.split() for line in text.splitlines()]
    assert text.endswith("2 partitions, 8 messages to read again")


def test_each_service_names_its_group_and_topics() -> None:
    settings = Settings(monitor_app_id="mon", casefeed_group="cf")
    assert targets(settings, "casefeed").group == "cf"
    assert targets(settings, "casefeed").topics == (ALERTS_HOUSEHOLD, ALERTS_REGIONAL)
    assert targets(settings, "casefeed-profiles").group == "cf.profiles"
    monitor = targets(settings, "monitor")
    assert monitor.group == "mon" and "events.medical-security.hospitalization" in monitor.topics
    assert all(t.startswith("events.") for t in monitor.topics)
    with pytest.raises(ConfigError, match="unknown service"):
        targets(settings, "desk")
