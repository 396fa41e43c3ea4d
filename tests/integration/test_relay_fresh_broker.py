"""`povwatch relay --once` on a fresh broker ends promptly and says what it left undone.

Before the fix it never ended on a broker without the comparison-result topics: the answers' consumer subscribed to
the five topics, waited 15 s for the first one's metadata, failed as "cannot reach Kafka", backed off and tried
again, until someone created the topics (the ~2 minutes once seen were a `topics ensure` run meanwhile). Now, on a
broker of its own (base + 920; its controller + 921), with one outbox row for a topic that does not exist yet:
`--once` ends within the bound, names the missing topic and leaves the row pending; after `topics ensure` and one
answer on a comparison-result topic (not Avro: skipped), it publishes the row, reads the answer through a consumer
group that never existed (the group coordinator of a fresh broker), and ends within the bound again; a third run
finds the answer committed and reads nothing.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from plumbing import kafka_local
from plumbing.settings import Settings
from schemas.topics import REGISTRY_HOUSEHOLD_STATUS
from services.casedb import outbox
from services.casedb.database import open_database

pytestmark = pytest.mark.integration

BASE = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092"))
BOOTSTRAP = f"127.0.0.1:{BASE + 920}"
BOUND = 60.0  # seconds a `--once` may take here (about 6 s measured on a loaded two-core machine)


@pytest.fixture(scope="module")
def fresh_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("relay-fresh")
    settings = Settings(bootstrap=BOOTSTRAP, kafka_data=workdir / "kafka")
    kafka_local.up(settings)
    try:
        yield workdir
    finally:
        kafka_local.down(settings)


def _cli(workdir: Path, *args: str, timeout: float = BOUND) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "POVWATCH_BOOTSTRAP": BOOTSTRAP, "POVWATCH_CASE_DB": f"sqlite:///{workdir / 'cases.db'}",
           "POVWATCH_RELAY_METRICS_PORT": "0", "POVWATCH_RUN_DIR": str(workdir / "run")}
    began = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"povwatch {' '.join(args)} did not end within {timeout:.0f} s: "
                             f"{(exc.stderr or b'')[-2000:]!r}") from None
    assert done.returncode == 0, f"povwatch {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return done, time.monotonic() - began


async def _send_answer(topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not an Avro answer", key=b"fresh-1")
    finally:
        await producer.stop()


def test_relay_once_ends_promptly_on_a_fresh_broker_and_says_what_it_left(fresh_broker: Path) -> None:
    store = open_database(f"sqlite:///{fresh_broker / 'cases.db'}")
    try:
        store.run(lambda s: outbox.add_message(s, REGISTRY_HOUSEHOLD_STATUS, b"H-FRESH-1", b"status",
                                               dt.datetime.now(dt.UTC)), "queue a status")
        # 1. nothing on the broker: no topic of the relay's exists
        first, took = _cli(fresh_broker, "relay", "--once")
        print(f"relay --once on a fresh broker: {took:.1f} s")
        assert "published 0" in first.stdout
        assert f"topic {REGISTRY_HOUSEHOLD_STATUS} does not exist" in first.stdout
        assert "no comparison-result topic on the broker yet" in first.stdout
        assert outbox.counts(store) == (1, 0)  # held, not lost
        assert "Traceback" not in first.stderr
        # 2. the topics exist now, one answer waits, and the relay's group has never been seen by the broker
        _cli(fresh_broker, "topics", "ensure", timeout=180)
        asyncio.run(_send_answer("events.pboc.comparison-result"))
        second, took = _cli(fresh_broker, "relay", "--once")
        print(f"relay --once with one answer, a new group: {took:.1f} s")
        assert "published 1" in second.stdout and "skipped 1" in second.stdout, second.stdout + second.stderr
        assert second.stdout.count("\n") == 1, second.stdout  # a summary line, nothing left undone
        assert outbox.counts(store) == (0, 1)
        # 3. the answer's offset was committed: nothing to read, no group join needed
        third, took = _cli(fresh_broker, "relay", "--once")
        print(f"relay --once with nothing to do: {took:.1f} s")
        assert "published 0" in third.stdout and "skipped 0" in third.stdout
    finally:
        store.close()
