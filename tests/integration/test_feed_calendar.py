"""A silent department is noticed, on a broker of its own (the test decides every feed's latest event): records
are written with chosen timestamps, then `povwatch feeds status --json` and the monitor's povwatch_feed_overdue
are read against a calendar."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from plumbing import kafka_local
from plumbing.kafka_io import ensure_topics
from plumbing.processes import ChildProcess, metric, wait_until
from plumbing.settings import Settings
from schemas.catalog import EVENT_FEEDS
from tests.integration.ops_world import free_port

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 900  # a broker of its own: whole topics matter
BOOTSTRAP = f"127.0.0.1:{PORT}"
NOW = dt.datetime.now(dt.UTC)
TOPIC = {(f.department, f.feed): f.topic for f in EVENT_FEEDS}


@pytest.fixture(scope="module")
def calendar_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("feed-calendar")
    settings = Settings(bootstrap=BOOTSTRAP, kafka_data=workdir / "kafka")
    kafka_local.up(settings)
    try:
        asyncio.run(ensure_topics(BOOTSTRAP, 3))

        async def write() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
            await producer.start()
            try:
                sends = {  # (department, feed) -> when its events were sent, per partition key
                    ("medical-security", "hospitalization"): [NOW - dt.timedelta(days=40), NOW - dt.timedelta(days=20)],
                    ("education", "dropout"): [NOW - dt.timedelta(days=1)],
                    ("public-security", "registration-change"): [NOW - dt.timedelta(hours=2)],
                }
                for feed, times in sends.items():
                    for when in times:
                        for key in (b"a", b"b", b"c"):  # several partitions: the latest over them counts
                            stamp = when - dt.timedelta(minutes=ord(key) - ord("a"))
                            await producer.send_and_wait(TOPIC[feed], b"x", key=key,
                                                         timestamp_ms=int(stamp.timestamp() * 1000))
            finally:
                await producer.stop()

        asyncio.run(write())
        calendar = workdir / "calendar.toml"
        cadences = {("medical-security", "hospitalization"): "weekly", ("education", "dropout"): "monthly by 25",
                    ("public-security", "registration-change"): "daily"}
        lines = [f"start = {(NOW - dt.timedelta(days=400)).date().isoformat()}"]
        for department in dict.fromkeys(f.department for f in EVENT_FEEDS):
            lines.append(f"[{department}]")
            lines += [f'{f.feed} = "{cadences.get((department, f.feed), "quarterly")}"'
                      for f in EVENT_FEEDS if f.department == department]
        calendar.write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield calendar
    finally:
        kafka_local.down(settings)


def _env(calendar: Path) -> dict[str, str]:
    return {**os.environ, "POVWATCH_BOOTSTRAP": BOOTSTRAP, "POVWATCH_FEEDS_CALENDAR": str(calendar),
            "POVWATCH_TIMEZONE": "Asia/Shanghai"}


def test_feeds_status_names_the_silent_feeds(calendar_world: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "services.cli", "feeds", "status", "--json"], env=_env(calendar_world),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # a feed is overdue
    rows = {(r["department"], r["feed"]): r for r in json.loads(done.stdout)}
    assert len(rows) == len(EVENT_FEEDS)
    hospital = rows[("medical-security", "hospitalization")]
    # the latest record of each partition is one of the three sent 20 days ago (keys a, b, c: 0 to 2 minutes
    # before), whichever partitions the keys fall in; never one of 40 days ago
    last = dt.datetime.fromisoformat(hospital["last_event"])
    assert last.utcoffset() == dt.timedelta(hours=8)  # in the prefecture's zone
    assert NOW - dt.timedelta(days=20, minutes=2, seconds=1) <= last <= NOW - dt.timedelta(days=20)
    assert hospital["due"] == (last.date() + dt.timedelta(days=7)).isoformat()
    assert (hospital["overdue"], hospital["state"]) == (True, "OVERDUE")
    assert rows[("education", "dropout")]["overdue"] is False
    assert rows[("public-security", "registration-change")]["state"] == "ok"
    never = rows[("pboc", "deposit-loan")]  # quarterly, nothing ever, the hub live for 400 days
    assert (never["last_event"], never["overdue"], never["state"]) == (None, True, "NEVER SEEN (overdue)")
    table = subprocess.run([sys.executable, "-m", "services.cli", "feeds", "status"], env=_env(calendar_world),
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 1
    assert f"{len(EVENT_FEEDS) - 2} of {len(EVENT_FEEDS)} feeds overdue" in table.stdout


def test_a_broken_calendar_is_one_line(calendar_world: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(calendar_world.read_text(encoding="utf-8").replace('dropout = "monthly by 25"',
                                                                       'dropout = "monthly by 30"'), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "services.cli", "feeds", "status"], env=_env(bad),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "education.dropout" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_monitor_exports_the_overdue_feeds(calendar_world: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {"POVWATCH_BOOTSTRAP": BOOTSTRAP, "POVWATCH_FEEDS_CALENDAR": str(calendar_world),
           "POVWATCH_FEEDS_CHECK_SECONDS": "1", "POVWATCH_MONITOR_METRICS_PORT": str(port),
           "POVWATCH_MONITOR_APP_ID": "it-feed-calendar"}
    monitor = ChildProcess(["monitor"], env=env, log_path=tmp_path / "monitor.log")
    try:
        samples = wait_until(port, lambda s: metric(s, "povwatch_feed_overdue", department="medical-security",
                                                    feed="hospitalization") == 1, timeout=90, child=monitor,
                             what="the feed calendar's first look")
        assert ("povwatch_feed_overdue", (("department", "education"), ("feed", "dropout"))) in samples
        assert metric(samples, "povwatch_feed_overdue", department="education", feed="dropout") == 0
        assert metric(samples, "povwatch_feed_overdue", department="pboc", feed="deposit-loan") == 1
        assert metric(samples, "povwatch_feed_last_event_timestamp_seconds", department="medical-security",
                      feed="hospitalization") == pytest.approx((NOW - dt.timedelta(days=20, minutes=1)).timestamp(),
                                                               abs=61)
        assert monitor.stop() == 0
    finally:
        monitor.kill()
