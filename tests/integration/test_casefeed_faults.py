"""The casefeed under real faults: the real broker, a real PostgreSQL server (scripts/postgres.sh), and a real
`povwatch casefeed` child process watched through its /metrics.

  * an alert whose text holds NUL characters (refused by PostgreSQL text columns) is stored with U+FFFD and the
    feed goes on;
  * a poison alert the database refuses with a data error (household id longer than the bounded column) is
    dead-lettered to dlq.casefeed with the reason and its offset committed, and the alerts after it still land;
  * PostgreSQL stopped while alerts are flowing, then started again: every alert lands exactly once.

Every test uses its own consumer group, started at the current end of the alert topics (the session broker may
hold other tests' alerts), alert ids unique to the test, and empty case-DB tables.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from plumbing.kafka_io import KafkaPublisher, ensure_topics, group_offsets, read_topic, topic_end_offsets
from plumbing.kafka_security import client_options
from plumbing.processes import ChildProcess, Samples, metric, wait_until
from schemas.codec import default_codec
from schemas.errors import ConfigError, DatabaseUnavailable
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL, CASEFEED_DLQ, TopicSpec
from services.casedb.database import open_database
from services.casedb.models import Base
from services.casedb.transaction import classify
from tests.integration.test_casedb_postgres import _script, pg_url  # noqa: F401  (the module's PostgreSQL)

pytestmark = pytest.mark.integration

CODEC = default_codec()
VILLAGE = "652701100201"
RAISED = dt.datetime(2024, 7, 1, 8, 30, tzinfo=dt.UTC)
TOPICS = [ALERTS_HOUSEHOLD, ALERTS_REGIONAL]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alert(alert_id: str, household: str, *, reason: str = "住院个人自付14500元(入院2024-06-28, 脑梗死, 12天)",
          ) -> dict[str, Any]:
    return {"alert_id": alert_id, "household_id": household, "village_code": VILLAGE, "rule": "MEDICAL_EXPENSE",
            "severity": "MEDIUM", "reason": reason, "event_ids": [f"ev-{alert_id}"],
            "occurred_at": dt.date(2024, 6, 28), "raised_at": RAISED}


async def _publish(bootstrap: str, alerts: list[dict[str, Any]]) -> None:
    async with KafkaPublisher(bootstrap, client_id="it-casefeed-faults") as publisher:
        for a in alerts:
            await publisher.send(ALERTS_HOUSEHOLD, a["household_id"].encode(),
                                 CODEC.encode("povwatch.alerts.HouseholdAlert", a))


def publish(bootstrap: str, alerts: list[dict[str, Any]]) -> None:
    asyncio.run(_publish(bootstrap, alerts))


async def _start_group_at_end(bootstrap: str, group: str) -> None:
    ends = await topic_end_offsets(bootstrap, TOPICS)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t, p in ends])
        await consumer.commit({TopicPartition(t, p): offset for (t, p), offset in ends.items()})
    finally:
        await consumer.stop()


class Feed:
    """One test's world: its group, its case DB URL, its `povwatch casefeed` child."""

    def __init__(self, bootstrap: str, db_url: str, workdir: Path) -> None:
        self.bootstrap = bootstrap
        self.db_url = db_url
        self.run = uuid.uuid4().hex[:8]
        self.group = f"it-casefeed-faults-{self.run}"
        self.port = _free_port()
        self.log = workdir / "casefeed.log"
        self.child: ChildProcess | None = None
        asyncio.run(ensure_topics(bootstrap, 3, [TopicSpec(t) for t in (*TOPICS, CASEFEED_DLQ)]))
        asyncio.run(_start_group_at_end(bootstrap, self.group))
        self.dlq_start = asyncio.run(topic_end_offsets(bootstrap, [CASEFEED_DLQ]))

    def start(self) -> None:
        self.child = ChildProcess(["casefeed"], log_path=self.log, env={
            "POVWATCH_BOOTSTRAP": self.bootstrap, "POVWATCH_CASE_DB": self.db_url,
            "POVWATCH_CASEFEED_GROUP": self.group, "POVWATCH_CASEFEED_METRICS_PORT": str(self.port)})

    def wait(self, done: Any, what: str, timeout: float = 90) -> Samples:
        return wait_until(self.port, done, timeout=timeout, child=self.child, what=what)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def evidence(self) -> dict[str, int]:
        """alert_id -> number of evidence rows (of this test's alerts)."""
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT alert_id, count(*) FROM evidence WHERE alert_id LIKE :run "
                                         "GROUP BY alert_id"), {"run": f"{self.run}-%"}).all()
        finally:
            engine.dispose()
        return {str(a): int(n) for a, n in rows}

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params).all())
        finally:
            engine.dispose()

    def dead_letters(self) -> list[tuple[bytes, dict[str, Any]]]:
        async def read() -> list[tuple[bytes, dict[str, Any]]]:
            out = []
            async for rec in read_topic(self.bootstrap, [CASEFEED_DLQ], idle_timeout=2):
                if rec.offset >= self.dlq_start.get((rec.topic, rec.partition), 0):
                    out.append((rec.key or b"", CODEC.decode(rec.value, expect="povwatch.DeadLetter").record))
            return out

        return [(k, r) for k, r in asyncio.run(read()) if r["fields"].get("alert_id", "").startswith(self.run)]

    def committed_at_end(self) -> bool:
        ends = asyncio.run(topic_end_offsets(self.bootstrap, TOPICS))
        committed = asyncio.run(group_offsets(self.bootstrap, self.group))
        return all(committed.get(tp, 0) == end for tp, end in ends.items())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def feed(broker: str, pg_url: str, tmp_path: Path) -> Iterator[Feed]:  # noqa: F811
    engine = create_engine(pg_url)
    try:
        Base.metadata.drop_all(engine)       # empty tables; the casefeed creates them again
    finally:
        engine.dispose()
    f = Feed(broker, pg_url, tmp_path)
    yield f
    f.stop()


def _lag(samples: Samples, group: str) -> float:
    return metric(samples, "povwatch_consumer_lag", group=group, topic=ALERTS_HOUSEHOLD)


def test_postgres_really_refuses_nul_and_that_is_a_data_error(pg_url: str) -> None:  # noqa: F811
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as info:
            conn.execute(text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})
    finally:
        engine.dispose()
    assert "NUL" in str(info.value)
    assert classify(info.value) == "refused"             # dead-lettered if it ever reached the database


def test_wrong_credentials_are_a_config_error_a_stopped_port_an_outage(pg_url: str) -> None:  # noqa: F811
    url = make_url(pg_url)
    with pytest.raises(ConfigError, match="password authentication failed") as info:
        open_database(url.set(password="wrong").render_as_string(hide_password=False))
    assert "wrong" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        open_database(url.set(database="povwatch_no_such_db").render_as_string(hide_password=False))
    with pytest.raises(DatabaseUnavailable, match="unreachable"):
        open_database(url.set(port=_free_port()).render_as_string(hide_password=False))


def test_nul_bearing_alerts_are_stored_sanitised_and_the_feed_goes_on(feed: Feed) -> None:
    r = feed.run
    alerts = [alert(f"{r}-1", f"{r}-H1"),
              alert(f"{r}-2", f"{r}-H1", reason="住院个人自付\x0014500元\x00(脑梗死)"),
              alert(f"{r}-3", f"{r}-H2"),
              alert(f"{r}-4", f"{r}-H3", reason="\x00"),
              alert(f"{r}-5", f"{r}-H2")]
    publish(feed.bootstrap, alerts)
    feed.start()
    samples = feed.wait(lambda s: metric(s, "povwatch_cases_evidence_written_total") >= 5, "5 alerts stored")
    assert metric(samples, "povwatch_casefeed_alerts_sanitised_total") == 2
    assert metric(samples, "povwatch_casefeed_dead_letters_total") == 0
    assert feed.evidence() == {a["alert_id"]: 1 for a in alerts}
    [(cases,)] = feed.query("SELECT count(*) FROM cases WHERE household_or_region LIKE :run", run=f"{r}-%")
    assert cases == 3
    [(reason,)] = feed.query("SELECT reason FROM evidence WHERE alert_id = :id", id=f"{r}-2")
    assert reason == "住院个人自付\ufffd14500元\ufffd(脑梗死)"
    # the feed goes on: a later alert lands too, and the lag comes back to 0 on every partition
    publish(feed.bootstrap, [alert(f"{r}-6", f"{r}-H1")])
    samples = feed.wait(lambda s: metric(s, "povwatch_cases_evidence_written_total") >= 6
                        and _lag(s, feed.group) == 0, "the sixth alert and no lag")
    lag_series = {dict(labels)["partition"] for (name, labels), _ in samples.items()
                  if name == "povwatch_consumer_lag" and dict(labels).get("group") == feed.group
                  and dict(labels).get("topic") == ALERTS_HOUSEHOLD}
    assert lag_series == {"0", "1", "2"}
    assert len(feed.evidence()) == 6
    assert feed.dead_letters() == []
    assert feed.committed_at_end()


def test_a_poison_alert_is_dead_lettered_and_the_following_alerts_land(feed: Feed) -> None:
    r = feed.run
    poison = alert(f"{r}-poison", f"{r}-" + "H" * 80)   # cases.household_or_region is VARCHAR(64): a data error
    before = [alert(f"{r}-{i}", f"{r}-A") for i in range(3)]
    after = [alert(f"{r}-{i}", f"{r}-B") for i in range(3, 8)]
    publish(feed.bootstrap, [*before, poison, *after])
    feed.start()
    samples = feed.wait(lambda s: metric(s, "povwatch_cases_evidence_written_total") >= 8
                        and metric(s, "povwatch_casefeed_dead_letters_total") >= 1, "8 alerts and 1 dead letter")
    assert metric(samples, "povwatch_casefeed_alerts_refused_total") == 1
    assert metric(samples, "povwatch_casefeed_dead_letters_total") == 1
    assert feed.evidence() == {a["alert_id"]: 1 for a in [*before, *after]}
    [(cases,)] = feed.query("SELECT count(*) FROM cases WHERE household_or_region LIKE :run", run=f"{r}-%")
    assert cases == 2
    [(key, letter)] = feed.dead_letters()
    origin = letter["message"]
    assert origin["topic"] == ALERTS_HOUSEHOLD
    assert key == f"{ALERTS_HOUSEHOLD}:{origin['partition']}:{origin['offset']}".encode()
    assert letter["stage"] == "casefeed" and letter["source"]["row"] == 0
    [reason] = letter["reasons"]
    assert "value too long for type character varying(64)" in reason
    assert letter["fields"]["alert_id"] == poison["alert_id"]
    feed.wait(lambda s: _lag(s, feed.group) == 0, "no lag")
    assert feed.committed_at_end()                       # the poison's offset is committed with the others
    log = feed.log_text()
    assert f"to {CASEFEED_DLQ}: the case database refuses the data: value too long" in log
    assert "Traceback" not in log


def test_postgres_stopped_and_restarted_while_alerts_flow_loses_and_doubles_nothing(feed: Feed) -> None:
    r = feed.run
    alerts = [alert(f"{r}-{i:03d}", f"{r}-H{i % 7}") for i in range(120)]
    feed.start()
    feed.wait(lambda s: metric(s, "povwatch_casefeed_db_up") == 1, "the casefeed to start")
    stop_publishing = threading.Event()

    def trickle() -> None:                                # alerts keep coming throughout, in small bursts
        for start in range(0, len(alerts), 4):
            publish(feed.bootstrap, alerts[start:start + 4])
            if stop_publishing.wait(0.15):
                return

    publisher = threading.Thread(target=trickle, name="alert-trickle")
    publisher.start()
    try:
        feed.wait(lambda s: metric(s, "povwatch_cases_evidence_written_total") >= 8, "the first alerts stored")
        stopped = _script("stop", 120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        try:
            down = feed.wait(lambda s: metric(s, "povwatch_casefeed_db_retries_total") >= 3
                             and _lag(s, feed.group) > 0, "retries against the stopped database, and lag")
            assert metric(down, "povwatch_casefeed_db_up") == 0
        finally:
            started = _script("start", 120)
            assert started.returncode == 0, started.stdout + started.stderr
        publisher.join(timeout=120)
        assert not publisher.is_alive()
        feed.wait(lambda s: metric(s, "povwatch_casefeed_db_up") == 1 and _lag(s, feed.group) == 0,
                  "the casefeed to catch up", timeout=120)
    finally:
        stop_publishing.set()
        publisher.join(timeout=120)
    stored = feed.evidence()
    assert stored == {a["alert_id"]: 1 for a in alerts}    # every alert exactly once
    [(cases,)] = feed.query("SELECT count(*) FROM cases WHERE household_or_region LIKE :run", run=f"{r}-%")
    assert cases == 7
    assert feed.committed_at_end()
    assert feed.dead_letters() == []
    log = feed.log_text()
    retries = [line for line in log.splitlines() if "case database unavailable (attempt" in line]
    assert len(retries) >= 3 and all("uncommitted" in line for line in retries)
    assert "case database available again" in log
    assert "Traceback" not in log, log[-3000:]
