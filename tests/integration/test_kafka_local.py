"""The local Kafka broker against the real thing: start, idempotence, a produce/consume round trip, stop."""
from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from plumbing import kafka_local
from plumbing.settings import Settings
from schemas.errors import EnvironmentProblem

pytestmark = pytest.mark.integration


def _pid(settings: Settings) -> int:
    return int((Path(settings.kafka_data) / "broker.pid").read_text())


def _is_running(pid: int) -> bool:
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_up_twice_is_already_running_with_the_same_pid(broker: str, broker_settings: Settings) -> None:
    pid = _pid(broker_settings)
    message = kafka_local.up(broker_settings)
    assert message.startswith("already running")
    assert f"pid {pid}" in message
    assert _pid(broker_settings) == pid


def test_status_reports_running(broker: str, broker_settings: Settings) -> None:
    assert kafka_local.status(broker_settings) == f"running (pid {_pid(broker_settings)}) on {broker}, Kafka 4.1.1"
    assert kafka_local.broker_answers(broker, timeout=5.0)


def test_produce_consume_round_trip(broker: str) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex}"
    sent = [f"message {i}".encode() for i in range(5)]

    async def round_trip() -> list[bytes]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
        await producer.start()
        try:
            for value in sent:
                await producer.send_and_wait(topic, value, key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id=f"g-{topic}",
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            received: list[bytes] = []
            while len(received) < len(sent):
                batches = await consumer.getmany(timeout_ms=1000)
                received += [record.value for records in batches.values() for record in records]
            return received
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(round_trip(), 60)) == sent


def test_topics_are_not_auto_created(broker: str) -> None:
    async def topics() -> list[str]:
        producer = AIOKafkaProducer(bootstrap_servers=broker, request_timeout_ms=3000)
        await producer.start()
        try:
            with pytest.raises((UnknownTopicOrPartitionError, KafkaTimeoutError)):
                await asyncio.wait_for(producer.send_and_wait(f"never-{uuid.uuid4().hex}", b"x"), 5)
        finally:
            await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    assert not [t for t in asyncio.run(topics()) if t.startswith("never-")]


def test_second_broker_cycle_stops_only_itself(broker: str, broker_settings: Settings, tmp_path: Path) -> None:
    other = Settings(bootstrap="127.0.0.1:19192", kafka_data=tmp_path / "other")
    assert kafka_local.status(other) == "not running"
    try:
        assert kafka_local.up(other).startswith("started Kafka 4.1.1 broker")
        pid = _pid(other)
        assert pid != _pid(broker_settings)
        assert kafka_local.status(other) == f"running (pid {pid}) on 127.0.0.1:19192, Kafka 4.1.1"
        assert kafka_local.broker_answers("127.0.0.1:19192", timeout=5.0)
    finally:
        stopped = kafka_local.down(other)
    assert stopped == f"stopped Kafka broker (pid {pid}) on 127.0.0.1:19192"
    assert not _is_running(pid)
    assert kafka_local.status(other) == "not running"
    assert kafka_local.down(other).startswith("not running")
    assert not kafka_local.broker_answers("127.0.0.1:19192", timeout=2.0)
    # the session broker is untouched
    assert kafka_local.broker_answers(broker, timeout=5.0)
    assert kafka_local.status(broker_settings).startswith("running")


def test_port_taken_by_a_broker_that_is_not_ours(broker: str, tmp_path: Path) -> None:
    """Another data dir on the session broker's port: refused, and a pid file naming a foreign process is ignored."""
    data = tmp_path / "intruder"
    data.mkdir()
    (data / "broker.pid").write_text(f"{os.getpid()}\n")  # a live process, but not our broker
    intruder = Settings(bootstrap=broker, kafka_data=data)
    assert kafka_local.status(intruder) == "not running"
    port = broker.rpartition(":")[2]
    with pytest.raises(EnvironmentProblem, match=f"port {port} on 127.0.0.1 is already in use by another process"):
        kafka_local.up(intruder)
    assert kafka_local.down(intruder).startswith("not running")
    assert kafka_local.broker_answers(broker, timeout=5.0)


def test_maven_failure_is_reported_and_cache_left_incomplete(tmp_path: Path) -> None:
    settings = Settings(bootstrap="127.0.0.1:19492", kafka_data=tmp_path / "data",
                        kafka_home=tmp_path / "home", kafka_version="0.0.0-does-not-exist")
    with pytest.raises(EnvironmentProblem, match="Maven could not fetch Kafka 0.0.0-does-not-exist"):
        kafka_local.up(settings)
    assert (tmp_path / "home" / "0.0.0-does-not-exist" / "pom.xml").exists()
    assert not (tmp_path / "home" / "0.0.0-does-not-exist" / ".complete").exists()


def test_a_cache_made_before_the_tools_is_completed(broker_settings: Settings, tmp_path: Path) -> None:
    """A cache as the previous kafka_local left it (the broker's jars, the old marker) gets kafka-tools and the
    new marker; the jars that were there stay the same files (a broker running from them keeps working)."""
    _, classpath, _ = kafka_local.java_classpath(broker_settings)  # the session's cache, complete
    old = tmp_path / "home" / broker_settings.kafka_version
    (old / "libs").mkdir(parents=True)
    for jar in Path(classpath.removesuffix("/*")).glob("*.jar"):
        if not jar.name.startswith(("kafka-tools-", "connect-", "jetty-")):
            shutil.copy(jar, old / "libs" / jar.name)
    (old / "libs" / "kafka_2.12-0.1.jar").write_bytes(b"a jar no longer wanted")
    (old / ".complete").write_text(f"kafka_2.13 {broker_settings.kafka_version}\n")
    broker_jar = old / "libs" / f"kafka_2.13-{broker_settings.kafka_version}.jar"
    inode = broker_jar.stat().st_ino

    settings = Settings(bootstrap=broker_settings.bootstrap, kafka_home=tmp_path / "home")
    _, new_classpath, log4j2 = kafka_local.java_classpath(settings)

    libs = Path(new_classpath.removesuffix("/*"))
    assert libs == old / "libs"
    assert (libs / f"kafka-tools-{broker_settings.kafka_version}.jar").exists()
    assert any(libs.glob("connect-runtime-*.jar"))
    assert not (libs / "kafka_2.12-0.1.jar").exists()
    assert broker_jar.stat().st_ino == inode
    assert sorted(p.name for p in libs.iterdir()) == sorted(p.name for p in Path(classpath[:-2]).iterdir())
    assert (old / ".complete").read_text() == kafka_local.cache_marker(broker_settings.kafka_version)
    assert log4j2.exists() and not list(old.glob(".fetch-*"))
