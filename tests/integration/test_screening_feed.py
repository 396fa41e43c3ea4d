"""Cadre visits close screening tasks end to end on the real broker: `povwatch intake` (a child process) takes the
cadre-visit reports over HTTP and publishes them on events.intake.cadre-visit; `povwatch casefeed` (a child process,
its own consumer group) reads them in its screening consumer and closes the tasks in a SQLite case DB opened by
`povwatch screening open`, as an operator runs it. Watched through the casefeed's /metrics and the case DB.

  * a report naming the household by its head's ID number (pseudonymised by the intake with the key the roster was
    imported with) closes the quarter's and the year's task; one naming it by 户编号 closes the year's task;
  * a report for a household not in the roster, one dated outside every period opened, a message that is not a
    report, and the same report delivered again close nothing and are counted by outcome;
  * the screening group's offsets are committed at the end of the topic; killed and run again (`--timeout`), the
    casefeed reads only what came in meanwhile, and reports what its screening consumer did when it stops.

The test's groups start at the current end of the topics (the session broker holds other tests' reports and
alerts).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import select
from sqlalchemy.orm import Session

from plumbing.kafka_io import KafkaPublisher, ensure_topics, group_offsets, read_since, topic_end_offsets
from plumbing.kafka_security import client_options
from plumbing.processes import ChildProcess, Samples, metric, wait_until
from schemas.catalog import INTAKE_SCHEMA
from schemas.codec import default_codec
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services.casedb.database import open_database
from services.casedb.models import ScreeningTask
from services.casefeed.screening_feed import CADRE_VISIT_TOPIC, screening_group
from services.cases.screening import Kind, current_period
from services.cases.screening_store import Screening
from tests.desk_world import H1, H2, PSEUDONYM_KEY, _id, prepare
from tests.integration.test_desk_browser import _free_port
from tests.integration.test_intake import TOKENS, _post, _wait_ready

pytestmark = pytest.mark.integration

CODEC = default_codec()
H1_HEAD = _id("652701", "19700304", 11, True)  # tests/desk_world.py's head of H1


def _povwatch_ok(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _start_at_end(bootstrap: str, group: str, topics: list[str]) -> None:
    ends = await topic_end_offsets(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t, p in ends])
        await consumer.commit({TopicPartition(t, p): offset for (t, p), offset in ends.items()})
    finally:
        await consumer.stop()


class Hub:
    """The test's case DB, intake and casefeed."""

    def __init__(self, bootstrap: str, workdir: Path) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.url = f"sqlite:///{workdir / 'cases.db'}"
        self.group = f"it-screening-{uuid.uuid4().hex[:8]}"
        self.metrics_port = _free_port()
        self.intake_port = _free_port()
        key = PSEUDONYM_KEY.decode()
        self.env = {"POVWATCH_BOOTSTRAP": bootstrap, "POVWATCH_CASE_DB": self.url, "POVWATCH_PSEUDONYM_KEY": key,
                    "POVWATCH_CASEFEED_GROUP": self.group, "POVWATCH_CASEFEED_METRICS_PORT": str(self.metrics_port),
                    "POVWATCH_INTAKE_PORT": str(self.intake_port), "POVWATCH_INTAKE_TOKENS": json.dumps(TOKENS)}
        asyncio.run(ensure_topics(bootstrap, 3))
        asyncio.run(_start_at_end(bootstrap, self.group, [ALERTS_HOUSEHOLD, ALERTS_REGIONAL]))
        asyncio.run(_start_at_end(bootstrap, screening_group(self.group), [CADRE_VISIT_TOPIC]))
        self.start_offsets = asyncio.run(topic_end_offsets(bootstrap, [CADRE_VISIT_TOPIC]))
        self.intake = ChildProcess(["intake"], env=self.env, log_path=workdir / "intake.log")
        self.casefeed: ChildProcess | None = None
        self.runs = 0

    def start_casefeed(self) -> None:
        self.runs += 1
        self.casefeed = ChildProcess(["casefeed"], env=self.env, log_path=self.workdir / f"casefeed-{self.runs}.log")

    def wait(self, done: Any, what: str, timeout: float = 90) -> Samples:
        return wait_until(self.metrics_port, done, timeout=timeout, child=self.casefeed, what=what)

    def visit(self, *, reported_on: dt.date, head: str | None = None, household: str | None = None,
              request_id: str) -> str:
        body: dict[str, Any] = {"risk_type": "其他", "description": "入户走访, 家中情况正常", "reporter": "村干部",
                                "visit_result": "正常", "reported_on": reported_on.isoformat(),
                                "request_id": f"{self.group}-{request_id}"}
        if head:
            body["head_id_number"] = head
        if household:
            body["household_id"] = household
        status, answer, _ = _post(self.intake_port, "cadre-visit", body, TOKENS["cadre-visit"])
        assert status == 202, answer
        return str(answer["event_id"])

    def reports(self) -> list[bytes]:
        """The values on the cadre-visit topic since the test began."""
        async def read() -> list[bytes]:
            return [r.value async for r in read_since(self.bootstrap, [CADRE_VISIT_TOPIC], self.start_offsets)]

        return asyncio.run(read())

    def publish(self, values: list[bytes]) -> None:
        async def send() -> None:
            async with KafkaPublisher(self.bootstrap, client_id="it-screening") as publisher:
                for value in values:
                    await publisher.send(CADRE_VISIT_TOPIC, b"it-screening", value)

        asyncio.run(send())

    def tasks(self) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
        store = open_database(self.url)
        try:
            with Session(store.engine) as session:
                return {(t.period, t.household_id): (t.status, t.closed_by, t.closing_event_id)
                        for t in session.scalars(select(ScreeningTask))}
        finally:
            store.close()

    def committed_at_end(self) -> bool:
        ends = asyncio.run(topic_end_offsets(self.bootstrap, [CADRE_VISIT_TOPIC]))
        committed = asyncio.run(group_offsets(self.bootstrap, screening_group(self.group)))
        return all(committed.get(tp, 0) == end for tp, end in ends.items())

    def stop(self) -> None:
        for child in (self.casefeed, self.intake):
            if child is not None:
                child.stop()


@pytest.fixture
def hub(broker: str, tmp_path: Path) -> Iterator[Hub]:
    h = Hub(broker, tmp_path)
    try:
        store = open_database(h.url)
        try:
            prepare(store, tmp_path)  # the roster (H1 边缘易致贫户 in 652701100201, H2 脱贫户 in 652722100201)
        finally:
            store.close()
        _wait_ready(h.intake_port, h.intake)
        yield h
    finally:
        h.stop()


def _visits(samples: Samples, outcome: str) -> float:
    return metric(samples, "povwatch_screening_visits_total", outcome=outcome)


def test_cadre_visits_through_the_broker_close_screening_tasks(hub: Hub) -> None:
    assert "opened 1 task(s)" in _povwatch_ok(hub.env, "screening", "open", "quarterly")
    assert "opened 2 task(s)" in _povwatch_ok(hub.env, "screening", "open", "annual")
    store = open_database(hub.url)
    try:
        today = Screening(store).today()
    finally:
        store.close()
    quarter, year = current_period(Kind.QUARTERLY, today).label, current_period(Kind.ANNUAL, today).label

    by_head = hub.visit(reported_on=today, head=H1_HEAD, request_id="h1")
    by_id = hub.visit(reported_on=today, household=H2, request_id="h2")
    hub.visit(reported_on=today, household="H-NOT-IN-ROSTER", request_id="unknown")
    hub.visit(reported_on=dt.date(today.year - 1, 12, 31), household=H2, request_id="last-year")
    first = hub.reports()
    assert len(first) == 4
    [again] = [v for v in first if CODEC.decode(v, INTAKE_SCHEMA).record["event_id"] == by_head]
    hub.publish([again, b"\xc3\x01 not a povwatch message"])  # H1's report delivered again, and garbage
    hub.start_casefeed()
    samples = hub.wait(lambda s: sum(_visits(s, o) for o in ("closed", "duplicate", "unknown_household",
                                                              "no_open_task", "undecodable")) >= 6,
                       "six cadre-visit messages handled")
    assert {o: _visits(samples, o) for o in ("closed", "duplicate", "already_closed", "unknown_household",
                                             "no_open_task", "undecodable", "refused")} == {
        "closed": 2, "duplicate": 1, "already_closed": 0, "unknown_household": 1, "no_open_task": 1,
        "undecodable": 1, "refused": 0}
    assert metric(samples, "povwatch_screening_tasks_closed_total") == 3
    assert hub.tasks() == {(quarter, H1): ("CLOSED", "cadre-visit", by_head),
                           (year, H1): ("CLOSED", "cadre-visit", by_head),
                           (year, H2): ("CLOSED", "cadre-visit", by_id)}
    samples = hub.wait(lambda s: metric(s, "povwatch_consumer_lag", group=screening_group(hub.group),
                                        topic=CADRE_VISIT_TOPIC) == 0 and hub.committed_at_end(),
                       "the screening group's offsets committed at the end")
    out = _povwatch_ok(hub.env, "screening", "status", "--json")
    totals = {p["period"]: p["total"] for p in json.loads(out)["periods"]}
    assert totals == {quarter: {"open": 0, "closed": 1, "tasks": 1, "percent_closed": 100.0},
                      year: {"open": 0, "closed": 2, "tasks": 2, "percent_closed": 100.0}}

    log = (hub.workdir / "casefeed-1.log").read_text(errors="replace")
    assert "Traceback" not in log and f"skipped {CADRE_VISIT_TOPIC}[" in log

    # stopped (the casefeed has no SIGTERM handler: it dies like a crash), then run again with --timeout: it reads
    # only the report that came in meanwhile (the others were committed) and says so when it stops
    assert hub.casefeed is not None
    hub.casefeed.stop()
    hub.casefeed = None
    hub.visit(reported_on=today, head=H1_HEAD, request_id="h1-again")
    done = subprocess.run([sys.executable, "-m", "services.cli", "casefeed", "--timeout", "25"],
                          env={**os.environ, **hub.env}, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "screening: 1 cadre-visit report(s) consumed, 0 task(s) closed" in done.stderr, done.stderr
    assert hub.committed_at_end()
    assert hub.tasks()[(year, H1)] == ("CLOSED", "cadre-visit", by_head)
