"""Every feed of the catalogue and every intake channel, end to end on the real broker: the connectors publish
(good rows, a bad row each, free text holding a phone number, a spaced ID number and a name), the intake server
takes reports over HTTP, and a real `povwatch monitor` consumes every event topic. Counted in and out:

- per feed: read = published + rejected, exactly one dead letter per bad row;
- every event of every department (and intake report) decodes with the .avsc files and fastavro alone;
- per topic: the monitor consumed exactly what was published (povwatch_events_consumed_total{topic});
- every published event is in the state the monitor keeps: a fact of its household (person- and household-
  linked rows, village rows that name someone, intake reports) or of its village (village rows naming no one),
  read back from the monitor's state changelogs; the feeds with rules raised their alerts, the others none;
- privacy: no ID number (in any separator form), name or phone number of the input on any topic.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from connectors.catalog import EVENT_FEEDS
from connectors.fields import Sex, Text, Year
from connectors.framework import FeedSpec
from plumbing.kafka_io import read_topic
from plumbing.processes import ChildProcess, metric, wait_until
from schemas.catalog import INTAKE_CHANNELS
from schemas.codec import default_codec
from schemas.topics import dlq_topic
from services.monitor.state import HOUSEHOLD_STATE, VILLAGE_STATE
from services.monitor.topics import MonitorTopics
from tests.integration.scenario import bad_check, make_id

pytestmark = pytest.mark.integration

CODEC = default_codec()
VILLAGE = "652701104207"
PHONE = "13912345678"
TOKENS = {"self-declaration": "every-feed-self-0123456789", "cadre-visit": "every-feed-cadre-0123456789",
          "social-clue": "every-feed-clue-0123456789"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Member:
    household: str
    name: str
    id: str
    male: bool
    relation: str


def _roster() -> list[Member]:
    people = []
    for h, (head, spouse, child) in enumerate([("热合曼·吐尔逊", "阿依努尔·买买提", "艾克拜尔"),
                                               ("张建国", "李秀英", "张小龙"), ("巴特尔", "其其格", "乌日娜")]):
        hid = f"EF-{h + 1:02d}"
        people += [Member(hid, head, make_id("652701", f"19{70 + h}0305", 10 + h, True), True, "户主"),
                   Member(hid, spouse, make_id("652701", f"19{72 + h}0708", 20 + h, False), False, "配偶"),
                   Member(hid, child, make_id("652701", f"20{10 + h}0101", 30 + h, h != 2),
                          h != 2, "子" if h != 2 else "女")]
    return people


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8-sig"))
    return path


def _spaced(id18: str) -> str:
    return f"{id18[:6]} {id18[6:14]} {id18[14:]}"


def feed_rows(spec: FeedSpec, people: list[Member]) -> tuple[list[list[str]], int, int]:
    """(rows, good, bad) for one feed: its example row, once per household (for a person-linked feed, about a
    different member each time; for a village-level feed, also once naming no one), then one bad row."""
    heads = [m for m in people if m.relation == "户主"]
    ids = [c for c in spec.columns if c.sensitive == "id"]
    has_names = any(c.sensitive == "name" for c in spec.columns)
    subjects: list[Member | None] = []
    for i, head in enumerate(heads if ids else []):  # a feed naming no one (collective-income): one row
        members = [m for m in people if m.household == head.household]
        subjects.append(members[i % len(members)] if spec.wire.link == "person" else head)
    if spec.wire.link == "village":
        subjects.append(None)
    rows = []
    for who in subjects:
        cells = dict(spec.example)
        for col in spec.columns:
            if col.sensitive == "id":
                cells[col.field] = who.id if who else ""
            elif col.sensitive == "name":
                cells[col.field] = who.name if who else ""
            elif col.field == "village_code":
                cells[col.field] = VILLAGE
            elif isinstance(col.parser, Year):  # last year: well inside the monitor's history horizon
                cells[col.field] = str(dt.date.today().year - 1)
            elif isinstance(col.parser, Sex) and who is not None:
                cells[col.field] = "男" if who.male else "女"
            elif isinstance(col.parser, Text) and col.parser.max_length >= 200 and cells.get(col.field) and who:
                # free text holding a phone number, the ID number in groups and the row's name: all masked (a
                # name the row does not give cannot be recognised, so it is written only where the row names one)
                contact = who.name if has_names else "家属"
                cells[col.field] = f"{cells[col.field]} 联系{contact}{PHONE} 证号{_spaced(who.id)}"
        rows.append([cells.get(c.field, "") for c in spec.columns])
    bad = {c.field: v for c, v in zip(spec.columns, rows[0], strict=True)}
    if ids:
        bad[ids[0].field] = bad_check(heads[0].id)
    else:
        bad["village_code"] = "65270110420"  # 11 digits
    rows.append([bad.get(c.field, "") for c in spec.columns])
    return rows, len(subjects), 1


class World:
    def __init__(self, bootstrap: str, workdir: Path) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        run = uuid.uuid4().hex[:8]
        self.app_id = f"it-every-{run}"
        self.monitor_port = _free_port()
        self.intake_port = _free_port()
        self.env = {"POVWATCH_BOOTSTRAP": bootstrap, "POVWATCH_MONITOR_APP_ID": self.app_id,
                    "POVWATCH_MONITOR_METRICS_PORT": str(self.monitor_port),
                    "POVWATCH_INTAKE_PORT": str(self.intake_port), "POVWATCH_INTAKE_TOKENS": json.dumps(TOKENS)}
        self.people = _roster()
        self.summaries: dict[str, dict[str, Any]] = {}
        self.expected: dict[str, tuple[int, int]] = {}
        self.intake_ids: dict[str, list[str]] = defaultdict(list)

    def cli(self, *args: str) -> dict[str, Any]:
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"povwatch {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if "--json" in args else {}

    def load_roster(self) -> None:
        rows = [[m.household, m.name, m.id, "男" if m.male else "女", m.relation, VILLAGE, "脱贫户", "监测中",
                 "有劳动能力", "8000", "3"] for m in self.people]
        header = ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态",
                  "劳动能力", "上年人均纯收入", "家庭人口数"]
        path = _write(self.workdir / "roster.csv", header, rows)
        self.cli("roster", "load", str(path), "--delta", "--json")

    def run_feeds(self) -> None:
        for spec in EVENT_FEEDS.values():
            rows, good, bad = feed_rows(spec, self.people)
            # the file's name (an event's source.origin) tells this module's events from others' on the broker
            path = _write(self.workdir / f"{self.app_id}-{spec.department}-{spec.feed}.csv",
                          [c.label for c in spec.columns], rows)
            self.summaries[spec.topic] = self.cli("connector", "run", spec.department, spec.feed, str(path), "--json")
            self.expected[spec.topic] = (good, bad)

    def post_intake(self) -> None:
        heads = [m for m in self.people if m.relation == "户主"]
        for channel in INTAKE_CHANNELS:
            for i, head in enumerate(heads):
                text = f"{head.name}家中老人住院, 电话{PHONE}, 身份证{_spaced(head.id)}"
                body: dict[str, Any] = {"risk_type": "因病", "reported_on": "2025-06-0" + str(i + 1),
                                        "description": text, "reporter": head.name,
                                        "request_id": f"{self.app_id}-{channel.feed}-{i}"}
                body |= {"head_id_number": head.id} if i % 2 == 0 else {"household_id": head.household}
                if channel.feed == "cadre-visit":
                    body["visit_result"] = "存在风险"
                if channel.feed == "social-clue":
                    body["clue_source"] = "信访"
                request = urllib.request.Request(
                    f"http://127.0.0.1:{self.intake_port}/v1/intake/{channel.feed}", method="POST",
                    data=json.dumps(body, ensure_ascii=False).encode(),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKENS[channel.feed]}"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == 202
                    self.intake_ids[channel.topic].append(json.loads(response.read())["event_id"])


def _wait_http(port: int, child: ChildProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert child.alive, child.tail(30)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline
    raise AssertionError(f"intake not ready:\n{child.tail(30)}")


async def _latest(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    latest: dict[bytes, bytes] = {}
    async for rec in read_topic(bootstrap, [topic], idle_timeout=2):
        if rec.key is not None and rec.value is not None:
            latest[rec.key] = rec.value
    return latest


AVRO_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"


def _avsc_readers() -> dict[bytes, Any]:
    """Every record schema of schemas/avro by its single-object fingerprint, from the .avsc files alone."""
    readers = {}
    for path in AVRO_DIR.glob("povwatch.*.avsc"):
        schema = fastavro.schema.load_schema(str(path))
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        readers[bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))] = schema  # as on the wire
    return readers


READERS = _avsc_readers()


def decode(value: bytes) -> dict[str, Any]:
    """A message as a consumer outside this code base reads it: the .avsc files and fastavro, nothing else."""
    assert value[:2] == b"\xc3\x01", "not Avro single-object encoding"
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), READERS[value[2:10]])
    assert isinstance(record, dict)
    return record


async def _events(bootstrap: str, topics: list[str],
                  garbage: Counter[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every event on `topics`, decoded. Other test modules share the session broker and some write messages
    that are not Avro on purpose: those are counted in `garbage` (by topic) when given, else refused."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async for rec in read_topic(bootstrap, topics, idle_timeout=2):
        if garbage is not None and (rec.value or b"")[:2] != b"\xc3\x01":
            garbage[rec.topic] += 1
            continue
        found[rec.topic].append(decode(rec.value))
    return found


@pytest.fixture(scope="module")
def world(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(broker, tmp_path_factory.mktemp("every-feed"))
    w.cli("topics", "ensure")
    w.load_roster()
    intake = ChildProcess(["intake"], env=w.env, log_path=w.workdir / "intake.log")
    monitor = ChildProcess(["monitor"], env=w.env, log_path=w.workdir / "monitor.log")
    try:
        _wait_http(w.intake_port, intake)
        w.run_feeds()
        w.post_intake()
        yield w
    finally:
        intake.stop()
        monitor.stop()


def test_every_feed_publishes_its_good_rows_and_dead_letters_its_bad_row(world: World) -> None:
    assert len(world.summaries) == len(EVENT_FEEDS) >= 25
    for topic, summary in world.summaries.items():
        good, bad = world.expected[topic]
        assert (summary["read"], summary["published"], summary["rejected"]) == (good + bad, good, bad), topic
    events = asyncio.run(_events(world.bootstrap, list(world.summaries), Counter()))
    for topic, summary in world.summaries.items():
        ours = [e["event_id"] for e in events[topic] if e["source"]["origin"].startswith(world.app_id)]
        assert len(ours) == len(set(ours)) == summary["published"], topic  # each good row once


def test_the_monitor_consumes_every_topic_and_keeps_every_event(world: World) -> None:
    garbage: Counter[str] = Counter()
    events = asyncio.run(_events(world.bootstrap, [*world.summaries, *(c.topic for c in INTAKE_CHANNELS)], garbage))
    published = {topic: len(recs) + garbage[topic] for topic, recs in events.items()}
    total = sum(published.values())
    samples = wait_until(world.monitor_port, lambda s: (
        metric(s, "povwatch_monitor_processed_total", stage="person") >= total
        and metric(s, "povwatch_monitor_processed_total", stage="household")
        >= metric(s, "povwatch_monitor_forwarded_total", to="household")
        and metric(s, "povwatch_monitor_processed_total", stage="village")
        >= metric(s, "povwatch_monitor_forwarded_total", to="village")), timeout=120, what="the monitor to settle")
    for topic, count in published.items():
        assert metric(samples, "povwatch_events_consumed_total", topic=topic) == count, topic
    assert metric(samples, "povwatch_monitor_dead_letters_total") == sum(garbage.values())  # only others' garbage
    assert metric(samples, "povwatch_events_too_late_total") == 0

    t = MonitorTopics(world.app_id)
    households = {k.decode(): HOUSEHOLD_STATE.decode(CODEC, v)
                  for k, v in asyncio.run(_latest(world.bootstrap, t.household_state)).items()}
    villages = {k.decode(): VILLAGE_STATE.decode(CODEC, v)
                for k, v in asyncio.run(_latest(world.bootstrap, t.village_state)).items()}
    # other test modules' households on the shared broker may have state too (their events, their persons)
    households = {h: state for h, state in households.items() if h.startswith("EF-")}
    assert set(households) == {"EF-01", "EF-02", "EF-03"}
    kept: Counter[str] = Counter()
    household_facts = {(f.topic, f.event_id) for s in households.values() for f in s.facts}
    village_facts = {(f.topic, f.event_id) for f in villages[VILLAGE].facts}
    seen = {eid for s in households.values() for eid in s.seen}
    intake_ids = {i for ids in world.intake_ids.values() for i in ids}
    for topic, records in events.items():
        spec_facts = next((s.wire.facts for s in EVENT_FEEDS.values() if s.topic == topic), True)
        for rec in records:
            if not (rec["source"]["origin"].startswith(world.app_id) or rec["event_id"] in intake_ids):
                continue  # another test module's event on the shared broker: not this roster's

            named = rec.get("person_key") or rec.get("head_person_key") or rec.get("household_id")
            if not named:
                assert (topic, rec["event_id"]) in village_facts, topic
                kept["village"] += 1
                continue
            assert rec["event_id"] in seen, topic
            if spec_facts:
                assert (topic, rec["event_id"]) in household_facts, topic
                kept["household"] += 1
    assert kept["village"] == sum(1 for s in EVENT_FEEDS.values() if s.wire.link == "village")
    # (other test modules' events on the shared broker may be kept too, for people of their own rosters)
    assert metric(samples, "povwatch_monitor_facts_kept_total") >= kept["household"] + kept["village"] > 0
    for topic, ids in world.intake_ids.items():
        assert {(topic, i) for i in ids} <= household_facts


async def _all_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if not t.startswith("__"))
    finally:
        await admin.close()


def test_no_id_number_name_or_phone_of_the_input_on_any_topic(world: World) -> None:
    names = asyncio.run(_all_topics(world.bootstrap))
    assert {dlq_topic(s.department) for s in EVENT_FEEDS.values()} <= set(names)
    needles = {PHONE.encode()}
    for m in world.people:
        for form in (m.id, m.id.lower(), _spaced(m.id), m.id[:6] + "-" + m.id[6:14] + "-" + m.id[14:], m.id[:17]):
            needles.add(form.encode())
        needles |= {m.name.encode("utf-8"), m.name.encode("gb18030")}
    scanned = 0

    async def scan() -> None:
        nonlocal scanned
        async for rec in read_topic(world.bootstrap, names, idle_timeout=3):
            blob = (rec.key or b"") + (rec.value or b"")
            for needle in needles:
                assert needle not in blob, f"{rec.topic}[{rec.partition}]@{rec.offset} carries {needle!r}"
            scanned += 1

    asyncio.run(scan())
    assert scanned > 200
