"""Comparison (比对) and the outbox relay on real brokers, driven through the command line.

1. A comparison request for a case goes through the session broker to a department's comparison connector, which
   answers from its CSV (one person found with a deposit, one not); `povwatch relay --once` stores the answers and
   `compare status` shows the request answered; a request answered for one of its two persons shows as partly
   answered, one without answers as open.
2. On a broker of this module's own (stopped and restarted): a household carried from APPLY to LABEL while Kafka is
   down; the relay, running all along, retries with backoff and marks nothing; once the broker is back every outbox
   row is published in id order and marked, and a running monitor judges the household by its new status: a vehicle
   bought before LABEL (未纳入) raised nothing, one bought after it (监测中) raises ASSET_PURCHASE.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.pseudonym import Pseudonymiser
from plumbing import kafka_local
from plumbing.kafka_io import KafkaPublisher, ensure_topics, read_topic
from plumbing.processes import ChildProcess, metric, scrape, wait_until
from plumbing.settings import DEV_PSEUDONYM_KEY, Settings
from schemas.codec import default_codec
from schemas.topics import REGISTRY_HOUSEHOLD_STATUS, REGISTRY_HOUSEHOLDS
from services.casedb.database import open_database
from services.casedb.models import OutboxMessage
from tests.casedb_behaviour import household_alert
from tests.desk_world import opened_before
from tests.integration.ops_world import VILLAGE, World, free_port, households, roster_file, vehicles_file

pytestmark = pytest.mark.integration

# a broker of this module's own, which test 2 stops (the session broker's port + 47; the controller takes + 1)
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 47
PSEUDO = Pseudonymiser(DEV_PSEUDONYM_KEY.encode())
USERS = (("v1", "village", VILLAGE), ("t1", "township", VILLAGE[:9]), ("c1", "county", VILLAGE[:6]))


def _users(world: World, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n", encoding="utf-8")
    for name, role, region in USERS:
        world.cli("users", "add", name, "--role", role, "--region", region, "--password-file", str(secret))


def _case(db: str, household: str) -> int:
    """A case for `household`, as the casefeed opens one from an alert."""
    store = open_database(db)
    try:
        alert = {**household_alert(f"cmp-{household}", household), "village_code": VILLAGE}
        case_id = store.record_household_alert(alert).case_id
        opened_before(store, dt.date(2025, 1, 1), case_id)  # the steps below are dated from 2025-01-01
        return case_id
    finally:
        store.close()


def _run(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """`povwatch ARGS` as World.cli runs it, whatever its exit code."""
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **world.env},
                          capture_output=True, text=True, timeout=300)


def _status(world: World) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in json.loads(world.cli("compare", "status", "--json"))}


# --- 1. comparison through the session broker ---------------------------------------------------------------
def test_a_comparison_request_is_answered_by_the_department_from_its_file(broker: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(bootstrap=broker, kafka_data=tmp_path / "unused")
    world = World(settings, tmp_path)
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    world.env.update({"POVWATCH_CASE_DB": db, "POVWATCH_RELAY_GROUP": f"relay-{run}",
                      "POVWATCH_RELAY_METRICS_PORT": "0"})
    asyncio.run(ensure_topics(broker, 3))
    first, second = households(f"CMP{run}", 2, members=2, status="监测中")
    world.cli("cases", "roster", str(roster_file(tmp_path / "roster.csv", [first, second])))
    _users(world, tmp_path)
    case_one, case_two = _case(db, first.hid), _case(db, second.hid)
    pw = ["--password-file", str(tmp_path / "password")]  # the --by user's password (written by _users)

    asked = json.loads(world.cli("compare", "request", "pboc", "--case", str(case_one), "--by", "c1", *pw, "--json"))
    assert (asked["persons"], asked["households"], asked["published"]) == (2, 1, True)
    rich, poor = first.members  # the bank holds a deposit of the first member, nothing of the second
    (tmp_path / "存贷款.csv").write_text(
        "姓名,身份证号码,存款余额,贷款余额,贷款类型,比对日期\r\n"
        f"测试甲,{rich},\"120,000.00\",0,其他,2024-06-30\r\n", encoding="utf-8")
    config = tmp_path / "pboc.toml"
    config.write_text(f'department = "pboc"\n[kafka]\nbootstrap = "{broker}"\n[comparison]\n'
                      f'group = "compare-{run}"\n[[comparison.sources]]\nfeed = "deposit-loan"\npath = "存贷款.csv"\n',
                      encoding="utf-8")
    out = world.cli("connector", "compare", "--config", str(config), "--timeout", "3")
    assert "requests 1, answers 2 (found 1)" in out, out

    # answers are on the department's topic, decodable with the .avsc files, with no name or ID number
    answers = [default_codec().decode(r.value).record for r in asyncio.run(_read(broker,
                                                                                  "events.pboc.comparison-result"))]
    mine = {a["person_key"]: a for a in answers if a["request_id"] == asked["request_id"]}
    assert set(mine) == {PSEUDO.person_key(rich), PSEUDO.person_key(poor)}
    found, nothing = mine[PSEUDO.person_key(rich)], mine[PSEUDO.person_key(poor)]
    assert found["found"] and found["records"][0]["deposit_balance"] == "120000.00"
    assert found["summary"].startswith("人民银行博州中心支行查到1条记录：存贷款：存款余额 120000.00")
    assert (nothing["found"], nothing["records"], nothing["summary"]) == (
        False, [], "人民银行博州中心支行未查到该人员的存贷款记录")
    shown = json.dumps(answers, ensure_ascii=False, default=str)
    assert rich not in shown and "测试甲" not in shown

    # a second request (public security, the other case) is answered for one person only; a third stays open
    partly = json.loads(world.cli("compare", "request", "public-security", "--case", str(case_two), "--by", "c1",
                                  *pw, "--json"))
    still_open = json.loads(world.cli("compare", "request", "farm-machinery", "--case", str(case_two), "--by", "c1",
                                      *pw, "--json"))
    asyncio.run(_answer_one(broker, partly["request_id"], PSEUDO.person_key(second.members[0])))
    out = world.cli("relay", "--once")
    assert "answers stored" in out
    status = _status(world)
    assert (status[asked["request_id"]]["state"], status[asked["request_id"]]["answered"],
            status[asked["request_id"]]["found"], status[asked["request_id"]]["case_id"]) == ("answered", 2, 1,
                                                                                              case_one)
    assert (status[partly["request_id"]]["state"], status[partly["request_id"]]["answered"]) == ("partly answered", 1)
    assert (status[still_open["request_id"]]["state"], status[still_open["request_id"]]["answered"]) == ("open", 0)
    text = world.cli("compare", "status")
    assert "partly answered" in text and "open" in text and "answered" in text

    # a second relay pass stores nothing twice (same group: nothing new; another group: all duplicates)
    out = world.cli("relay", "--once", env={"POVWATCH_RELAY_GROUP": f"relay-again-{run}"})
    assert "answers stored 0" in out
    assert _status(world)[asked["request_id"]]["answered"] == 2

    # one-line errors, non-zero exit, no traceback; a request acts as its --by user only with their password
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password of c1\n", encoding="utf-8")
    for args, message in ((["compare", "request", "health", "--case", str(case_one), "--by", "c1", *pw],
                           "health answers no comparison requests"),
                          (["compare", "request", "pboc", "--case", str(case_one), "--by", "v1", *pw],
                           "may not request a comparison"),
                          (["compare", "request", "pboc", "--by", "c1"], "either --case"),
                          (["compare", "request", "pboc", "--case", str(case_one), "--by", "c1", "--password-file",
                            str(wrong)], "wrong password")):
        done = _run(world, *args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


async def _read(broker: str, topic: str) -> list[Any]:
    return [r async for r in read_topic(broker, [topic], idle_timeout=2.0)]


async def _answer_one(broker: str, request_id: str, person_key: str) -> None:
    from schemas.catalog import comparison_department
    from services.compare.records import RESULT_SCHEMA, result_record

    entry = comparison_department("public-security")
    record = result_record(entry, request_id, person_key, [], dt.datetime.now(dt.UTC))
    async with KafkaPublisher(broker) as publisher:
        await publisher.send(entry.result_topic, request_id.encode(), default_codec().encode(RESULT_SCHEMA, record))


# --- 2. the outbox with the broker stopped and restarted ----------------------------------------------------------
@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("relay")
    settings = Settings(bootstrap=f"127.0.0.1:{PORT}", kafka_data=workdir / "kafka")
    kafka_local.up(settings)
    world = World(settings, workdir)
    world.cli("topics", "ensure")
    try:
        yield world
    finally:
        world.stop_all()
        kafka_local.down(settings)


def _processed(port: int) -> float:
    return metric(scrape(port), "povwatch_monitor_processed_total", stage="household")


def test_label_with_kafka_down_reaches_the_monitor_through_the_outbox(own: World, tmp_path: Path) -> None:
    world = own
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    world.env["POVWATCH_CASE_DB"] = db
    labelled, other = households("OUTBOX", 2, members=2, status="未纳入")
    roster = roster_file(tmp_path / "roster.csv", [labelled, other])
    world.roster(roster)
    world.cli("cases", "roster", str(roster))
    _users(world, tmp_path)
    cases = {h.hid: _case(db, h.hid) for h in (labelled, other)}

    app = f"outbox-{uuid.uuid4().hex[:8]}"
    monitor, monitor_port = world.monitor(app, "monitor")
    wait_until(monitor_port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=60, child=monitor,
               what="the monitor to be ready")
    before = _processed(monitor_port)
    world.publish("public-security", "vehicle-purchase",
                  vehicles_file(tmp_path / "v1.csv", [labelled.members[0]], day=dt.date(2024, 12, 1)))
    wait_until(monitor_port, lambda s: metric(s, "povwatch_monitor_processed_total", stage="household") > before,
               timeout=60, child=monitor, what="the vehicle purchase to be judged")
    assert [a for a in world.alerts("OUTBOX") if a["rule"] == "ASSET_PURCHASE"] == []  # 未纳入: nothing

    relay_port = free_port()
    relay = ChildProcess(["relay", "--interval", "0.5"], log_path=tmp_path / "relay.log",
                         env={**world.env, "POVWATCH_RELAY_METRICS_PORT": str(relay_port),
                              "POVWATCH_RELAY_GROUP": f"relay-{uuid.uuid4().hex[:8]}"})
    world.monitors.append(relay)  # stopped with the others
    wait_until(relay_port, lambda s: metric(s, "povwatch_relay_outbox_pending") == 0, timeout=60, child=relay,
               what="the relay to start")

    kafka_local.down(world.settings)
    steps = [("APPLY", "v1", "2025-01-01"), ("PUBLIC_NOTICE", "v1", "2025-01-02"),
             ("TOWNSHIP_VERIFY", "t1", "2025-01-08"), ("COUNTY_CONFIRM", "c1", "2025-01-09"),
             ("DATA_COMPARE", "c1", "2025-01-10"), ("LABEL", "c1", "2025-01-11")]
    for household in (labelled, other):
        for step, user, day in steps:
            extra = ["--authorised"] if step == "APPLY" else []
            world.cli("case", "advance", str(cases[household.hid]), step, "--by", user, "--on", day, *extra,
                      "--password-file", str(tmp_path / "password"))
    # a comparison request made while Kafka is down is kept for the relay too
    done = _run(world, "compare", "request", "pboc", "--case", str(cases[other.hid]), "--by", "c1", "--password-file",
                str(tmp_path / "password"), "--json")
    assert done.returncode == 0 and "not published" in done.stderr, done.stderr
    request_id = json.loads(done.stdout)["request_id"]

    samples = wait_until(relay_port, lambda s: metric(s, "povwatch_relay_publish_failures_total") >= 3
                         and metric(s, "povwatch_relay_outbox_pending") == 3, timeout=90, child=relay,
                         what="the relay to retry with all three rows")
    assert metric(samples, "povwatch_relay_published_total") == 0
    store = open_database(db)
    try:
        with Session(store.engine) as session:
            rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        assert [r.published_at for r in rows] == [None, None, None]  # nothing marked while Kafka is down
        failures = [line for line in (tmp_path / "relay.log").read_text().splitlines()
                    if "publishing the outbox failed" in line]
        assert len(failures) >= 3 and "3 message(s) held unpublished" in failures[-1]  # one line per attempt

        kafka_local.up(world.settings)
        wait_until(relay_port, lambda s: metric(s, "povwatch_relay_outbox_pending") == 0
                   and metric(s, "povwatch_relay_published_total") == 3, timeout=120, child=relay,
                   what="the relay to catch up")
        assert metric(scrape(relay_port), "povwatch_relay_last_publish_timestamp_seconds") > time.time() - 120
        with Session(store.engine) as session:
            rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    finally:
        store.close()
    assert [(r.topic, r.key) for r in rows] == [(REGISTRY_HOUSEHOLD_STATUS, labelled.hid.encode()),
                                               (REGISTRY_HOUSEHOLD_STATUS, other.hid.encode()),
                                               ("requests.pboc.comparison", request_id.encode())]
    marked = [r.published_at for r in rows]
    assert all(m is not None for m in marked) and marked == sorted(marked)  # type: ignore[type-var]

    # every row on its topic exactly once, in id order: the status topic says 监测中, the roster's topic is the
    # roster load's alone (one writer per topic)
    codec = default_codec()
    statuses = asyncio.run(_read(world.settings.bootstrap, REGISTRY_HOUSEHOLD_STATUS))
    registry = asyncio.run(_read(world.settings.bootstrap, REGISTRY_HOUSEHOLDS))
    for row in rows[:2]:
        mine = [r for r in statuses if r.key == row.key]  # one key: one partition, in the order it was written
        assert [codec.decode(r.value).record["monitoring_status"] for r in mine] == ["MONITORING"]
        assert mine[-1].value == row.value  # the relay's record, once
        assert [codec.decode(r.value).record["monitoring_status"] for r in registry if r.key == row.key] == [
            "NOT_INCLUDED"]
    first, second = ([r for r in statuses if r.key == row.key][-1] for row in rows[:2])
    if first.partition == second.partition:
        assert first.offset < second.offset  # published in id order
    requests = [r for r in asyncio.run(_read(world.settings.bootstrap, "requests.pboc.comparison"))
                if r.key == request_id.encode()]
    assert [r.value for r in requests] == [rows[2].value]

    # the running monitor now judges the household by its new status
    world.wait_monitor_settled(app, monitor)  # it has read the status records
    assert monitor.alive, monitor.tail(20)
    world.publish("public-security", "vehicle-purchase",
                  vehicles_file(tmp_path / "v2.csv", [labelled.members[1]], day=dt.date(2025, 2, 1)))
    alerts = world.wait_alerts("OUTBOX", 1, timeout=120, alive=lambda: monitor.alive)
    assert {(a["household_id"], a["rule"], a["severity"]) for a in alerts} == {
        (labelled.hid, "ASSET_PURCHASE", "LOW")}
