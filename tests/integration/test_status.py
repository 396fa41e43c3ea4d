"""`povwatch status` and `povwatch kafka tool` on the real broker: topics, consumer groups with known committed
offsets (exact lag), a monitor's /metrics served by prometheus_client, and Kafka's own consumer-groups tool
agreeing with the lag povwatch computes."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from plumbing import kafka_local
from plumbing.kafka_io import ensure_topics
from plumbing.kafka_security import client_options
from plumbing.kafka_tools import TOOLS
from plumbing.settings import Settings
from schemas import catalog

pytestmark = pytest.mark.integration

HOSP = "events.medical-security.hospitalization"
HOUSEHOLD = "alerts.household"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=180)


async def _produce(bootstrap: str, counts: dict[tuple[str, int], int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **client_options(), acks="all")
    await producer.start()
    try:
        for (topic, partition), count in counts.items():
            for i in range(count):
                await producer.send_and_wait(topic, f"status test {i}".encode(), key=b"k", partition=partition)
    finally:
        await producer.stop()


async def _offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """(log start, end) of every partition, read with aiokafka alone (not through povwatch)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options())
    await consumer.start()
    try:
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def _commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t, p in offsets])
        await consumer.commit({TopicPartition(t, p): off for (t, p), off in offsets.items()})
    finally:
        await consumer.stop()


@dataclass
class Setup:
    env: dict[str, str]
    bootstrap: str
    monitor_group: str
    casefeed_group: str
    offsets: dict[tuple[str, int], tuple[int, int]]  # after producing, read independently
    committed: dict[tuple[str, int], int]


@pytest.fixture(scope="module")
def setup(broker: str) -> Iterator[Setup]:
    run = uuid.uuid4().hex[:8]
    monitor_group, casefeed_group = f"status-monitor-{run}", f"status-casefeed-{run}"
    asyncio.run(ensure_topics(broker, 3))
    before = asyncio.run(_offsets(broker, [HOSP, HOUSEHOLD]))
    asyncio.run(_produce(broker, {(HOSP, 0): 5, (HOSP, 1): 3, (HOUSEHOLD, 0): 4}))
    # the monitor has read 2 of partition 0's new messages and all of partition 1's; nothing on partition 2
    committed = {(HOSP, 0): before[(HOSP, 0)][1] + 2, (HOSP, 1): before[(HOSP, 1)][1] + 3}
    asyncio.run(_commit(broker, monitor_group, committed))
    # the casefeed is done with partition 0 of alerts.household and has committed nothing else
    household_done = {(HOUSEHOLD, 0): before[(HOUSEHOLD, 0)][1] + 4}
    asyncio.run(_commit(broker, casefeed_group, household_done))
    offsets = asyncio.run(_offsets(broker, [spec.name for spec in catalog.project_topics()]))
    env = {"POVWATCH_BOOTSTRAP": broker, "POVWATCH_MONITOR_APP_ID": monitor_group,
           "POVWATCH_CASEFEED_GROUP": casefeed_group, "POVWATCH_MONITOR_METRICS_PORT": str(_free_port())}
    yield Setup(env, broker, monitor_group, casefeed_group, offsets, {**committed, **household_done})


def _expected_lag(s: Setup, topic: str, partition: int) -> int:
    start, end = s.offsets[(topic, partition)]
    done = s.committed.get((topic, partition))
    return end - (start if done is None else done)


def _status_json(s: Setup, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = _cli({**s.env, **(env or {})}, "status", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_status_json_gives_exact_lag(setup: Setup) -> None:
    data = _status_json(setup)
    assert data["broker"] == {"reachable": True, "brokers": 1}
    assert data["missing_topics"] == []
    topics = {t["name"]: t for t in data["topics"]}
    assert list(topics) == [spec.name for spec in catalog.project_topics()]
    assert topics[HOSP]["partitions"] == 3
    assert topics[HOSP]["end_offsets"] == [setup.offsets[(HOSP, p)][1] for p in range(3)]

    monitor, household_stage, village_stage, casefeed, profiles, screening = data["groups"]
    # the case feed's side consumers, never started here: known by name and role, nothing committed
    assert [(g["role"], g["group"]) for g in (profiles, screening)] == [
        ("casefeed profiles", f"{setup.casefeed_group}.profiles"),
        ("casefeed screening", f"{setup.casefeed_group}.screening")]
    assert (monitor["role"], monitor["group"], monitor["state"], monitor["members"]) == (
        "monitor", setup.monitor_group, "Empty", 0)
    # the monitor's later stages are groups of their own, named after its app id
    assert (household_stage["group"], village_stage["group"]) == (f"{setup.monitor_group}.household",
                                                                  f"{setup.monitor_group}.village")
    hosp = {p["partition"]: p for p in monitor["partitions"] if p["topic"] == HOSP}
    assert (hosp[0]["lag"], hosp[1]["lag"]) == (3, 0)  # 5 produced, 2 done; 3 produced, 3 done
    assert hosp[0]["committed"] == setup.committed[(HOSP, 0)] and hosp[2]["committed"] is None
    assert hosp[2]["lag"] == _expected_lag(setup, HOSP, 2)  # uncommitted: what is left in the log
    assert {p["topic"] for p in monitor["partitions"]} == {f.topic for f in catalog.monitored_feeds()}
    for p in monitor["partitions"]:
        assert p["lag"] == _expected_lag(setup, p["topic"], p["partition"]), p
    assert monitor["total_lag"] == sum(p["lag"] for p in monitor["partitions"])

    assert casefeed["group"] == setup.casefeed_group
    household = {p["partition"]: p for p in casefeed["partitions"] if p["topic"] == HOUSEHOLD}
    assert household[0]["lag"] == 0
    assert casefeed["total_lag"] == sum(_expected_lag(setup, t, p) for t in ("alerts.household", "alerts.regional")
                                        for p in range(3))

    assert data["monitor"]["reachable"] is False
    assert data["monitor"]["error"] == "Connection refused"


def test_status_reads_the_monitors_metrics(setup: Setup) -> None:
    registry = CollectorRegistry()
    Gauge("povwatch_registry_ready", "ready", registry=registry).set(1)
    pending = Gauge("povwatch_events_pending", "pending", ["stage"], registry=registry)
    pending.labels("person").set(2)
    pending.labels("household").set(1)
    Counter("povwatch_events_unmatched_total", "unmatched", ["topic"], registry=registry).labels(HOSP).inc(4)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        data = _status_json(setup, {"POVWATCH_MONITOR_METRICS_PORT": str(port)})
        text = _cli({**setup.env, "POVWATCH_MONITOR_METRICS_PORT": str(port)}, "status").stdout
    finally:
        server.shutdown()
        thread.join()
    assert data["monitor"] == {"url": f"http://127.0.0.1:{port}/metrics", "reachable": True, "error": None,
                               "registry_ready": True, "events_pending": 3, "events_unmatched": {HOSP: 4},
                               "events_unmatched_total": 4}
    assert text.splitlines()[-1] == (f"monitor http://127.0.0.1:{port}/metrics: registry ready; events pending 3; "
                                     f"events unmatched 4 ({HOSP} 4)")
    assert f"group {setup.monitor_group} (monitor): Empty, 0 members, total lag" in text


def test_status_without_a_broker_is_one_line_and_exit_2(setup: Setup) -> None:
    done = _cli({**setup.env, "POVWATCH_BOOTSTRAP": f"127.0.0.1:{_free_port()}"}, "status")
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("povwatch: error: cannot reach Kafka at 127.0.0.1:")


def test_kafkas_consumer_groups_tool_agrees_with_status(setup: Setup) -> None:
    done = _cli(setup.env, "kafka", "tool", "kafka-consumer-groups", "--describe", "--group", setup.monitor_group)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(setup.monitor_group)]
    tool_lags = {(row[1], int(row[2])): int(row[5]) for row in rows}  # GROUP TOPIC PARTITION CURRENT END LAG ...
    assert tool_lags == {(HOSP, 0): 3, (HOSP, 1): 0}  # the tool shows committed partitions only
    monitor = _status_json(setup)["groups"][0]
    ours = {(p["topic"], p["partition"]): p["lag"] for p in monitor["partitions"] if p["committed"] is not None}
    assert ours == tool_lags


def test_kafka_topics_tool_describes_a_topic_with_the_bootstrap_added(setup: Setup) -> None:
    done = _cli(setup.env, "kafka", "tool", "kafka-topics", "--describe", "--topic", HOSP)
    assert done.returncode == 0, done.stderr
    assert f"Topic: {HOSP}\t" in done.stdout and "PartitionCount: 3" in done.stdout
    missing = _cli(setup.env, "kafka", "tool", "kafka-topics.sh", "--describe", "--topic", "no.such.topic")
    assert missing.returncode == 1  # the tool's own exit code
    assert "Topic 'no.such.topic' does not exist" in missing.stdout


def test_every_tool_main_class_is_in_the_cache(broker: str, broker_settings: Settings) -> None:
    _, classpath, _ = kafka_local.java_classpath(broker_settings)
    classes: set[str] = set()
    for jar in Path(classpath.removesuffix("/*")).glob("*.jar"):
        with zipfile.ZipFile(jar) as archive:
            classes |= {n.removesuffix(".class").replace("/", ".") for n in archive.namelist()
                        if n.endswith(".class")}
    absent = {name: tool.main for name, tool in TOOLS.items() if tool.main not in classes}
    assert not absent, f"main classes not in {classpath}: {absent}"
