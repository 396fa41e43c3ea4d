"""How long the monitor's person stage takes to recover from a transient failure, with a large registry loaded.

    .venv/bin/python bench/recovery.py [--persons N] [--events E] [--port PORT] [--store memory|rocksdb]

Starts its own Kafka broker (127.0.0.1:PORT, data in var/bench-recovery, wiped first, stopped at the end), loads a
generated roster of 200 households plus N synthetic persons straight onto registry.persons (1,000,000 by default),
and runs the person stage's StageRunner in this process until it is ready (start-up). Then E hospitalisations of
roster persons are published, and the producer's first send of them fails with a transient error (as a send
timeout would): the time from that failure until the stage is ready again, and until every event is forwarded
(the replayed batch), is what a transient failure costs. The first retry waits the engine's first back-off
(0.5 s), included in both figures.

The same script runs on an older checkout of the engine (its StageRunner has no `store` argument; it is passed
only when the runner takes it), to compare before and after. Written to var/bench-recovery/recovery.json too.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import inspect
import json
import random
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from schemas.codec import default_codec
from services.demo.population import generate
from services.ingest import load_roster, run_connector
from services.monitor.app import monitor_topics, stage_specs
from services.monitor.engine import StageRunner
from services.monitor.topics import MonitorTopics

try:
    from plumbing import kafka_local
    from plumbing.batch_sender import BatchSender
    from plumbing.kafka_io import ensure_topics, project_topics, topic_offsets
    from plumbing.kafka_security import client_options
    from plumbing.settings import Settings
except ImportError:  # a checkout from before the plumbing package (to measure the engine before its change)
    from services.kafka_io import ensure_topics, project_topics, topic_offsets  # type: ignore[no-redef]
    from services.settings import Settings  # type: ignore[no-redef]

    def client_options() -> dict[str, Any]:  # type: ignore[misc]  # before TLS: plaintext only
        return {}

    from services import kafka_local  # type: ignore[no-redef]
    from services.monitor.engine import BatchSender  # type: ignore[attr-defined,no-redef]

from pipeline import roster_people, write_stays  # bench/pipeline.py, beside this script  # isort: skip

WORK = Path("var") / "bench-recovery"


async def publish_persons(bootstrap: str, count: int, today: dt.date, seed: int = 11) -> None:
    """`count` synthetic Person records on registry.persons (random person keys, households outside the roster)."""
    codec, rng = default_codec(), random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **client_options(),
                                linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        sender = BatchSender(producer)
        now = dt.datetime.now(dt.UTC)
        for start in range(0, count, 50_000):
            messages: list[tuple[str, bytes, bytes | None, int | None]] = []
            for i in range(start, min(count, start + 50_000)):
                key = f"{rng.getrandbits(256):064x}"
                record = {"person_key": key, "household_id": f"SYN-{i // 4:07d}",
                          "relation": "户主" if i % 4 == 0 else "子", "sex": "M" if i % 2 else "F",
                          "birth_date": today - dt.timedelta(days=rng.randint(3650, 30000)),
                          "village_code": f"6527011002{i % 100:02d}", "ingested_at": now,
                          "source": {"department": "bureau", "feed": "roster", "origin": "bench", "row": i + 2,
                                     "connector_version": "bench"}}
                messages.append(("registry.persons", key.encode(),
                                 codec.encode("povwatch.registry.Person", record), None))
            await sender.send(messages)
    finally:
        await producer.stop()


async def measure(settings: Settings, events: int, store: str, stays: Path) -> dict[str, Any]:
    spec = stage_specs(settings, default_codec())[0]  # the person stage
    assert spec.name == "person"
    failed_at: list[float] = []

    async def producer_factory() -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, **client_options(), acks="all",
                                    enable_idempotence=True, linger_ms=5, request_timeout_ms=15_000,
                                    max_batch_size=256 * 1024)
        await producer.start()
        if not failed_at:
            real = producer.send_batch

            async def send_batch(batch: Any, topic: str, *, partition: int) -> Any:
                if not failed_at:
                    failed_at.append(time.monotonic())
                    raise KafkaTimeoutError("injected: a send timed out")
                return await real(batch, topic, partition=partition)

            producer.send_batch = send_batch
        return producer

    stopping = asyncio.Event()
    extra: dict[str, Any] = {}
    if "store" in inspect.signature(StageRunner).parameters:
        from services.monitor.store import open_store

        extra["store"] = open_store(store, WORK / "store", spec.group)
    elif store != "memory":
        raise SystemExit("this checkout's engine has no disk store")
    runner = StageRunner(spec, bootstrap=settings.bootstrap, producer_factory=producer_factory,
                         codec=default_codec(), clock=lambda: dt.datetime.now(dt.UTC), stopping=stopping,
                         max_records=settings.monitor_max_records, **extra)
    started = time.monotonic()
    task = asyncio.create_task(runner.run())
    while not runner.ready():
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    ready = time.monotonic() - started
    print(f"person stage ready after {ready:.1f} s")
    summary = await run_connector(settings, "medical-security", "hospitalization", stays)
    assert summary.published == events, summary
    forwarded_topic = MonitorTopics(settings.monitor_app_id).household_events

    async def forwarded() -> int:
        found = await topic_offsets(settings.bootstrap, [forwarded_topic])
        return sum(end for _, end in found.get(forwarded_topic, []))

    while not failed_at:
        await asyncio.sleep(0.01)
    # after the back-off the loop recovers: partitions whose state is reloaded are not ready meanwhile
    went_down: float | None = None
    back: float | None = None
    done = 0
    deadline = time.monotonic() + 120  # an engine that skips the failed batch never forwards it
    while time.monotonic() < deadline:
        if not runner.ready():
            went_down = went_down or time.monotonic()
        elif went_down is not None and back is None:
            back = time.monotonic() - failed_at[0]
        done = await forwarded()
        if done >= events and (went_down is None or back is not None):
            break
        await asyncio.sleep(0.01)
    drained = time.monotonic() - failed_at[0] if done >= events else None
    stopping.set()
    await task
    state = "never stopped being ready; " if back is None else f"ready again after {back:.2f} s; "
    print("transient failure: " + state + (
        f"every event forwarded after {drained:.2f} s" if drained is not None
        else f"only {done} of {events} events forwarded 120 s later (the failed batch was skipped)"))
    return {"ready_s": ready, "recovered_ready_s": back, "recovered_forwarded_s": drained, "forwarded": done,
            "recovery_s": getattr(runner, "recovery_seconds", None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the monitor's recovery from a transient failure")
    parser.add_argument("--persons", type=int, default=1_000_000, help="synthetic registry persons (1,000,000)")
    parser.add_argument("--events", type=int, default=1000, help="events published after start-up (1000)")
    parser.add_argument("--port", type=int, default=19492, help="port of the bench's own broker (19492)")
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory")
    args = parser.parse_args(argv)
    app = f"bench-recovery-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap=f"127.0.0.1:{args.port}", kafka_data=WORK / "kafka", monitor_app_id=app)
    print(kafka_local.down(settings))
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "files").mkdir(parents=True)
    today = dt.date.today()
    try:
        print(kafka_local.up(settings))
        asyncio.run(ensure_topics(settings.bootstrap, settings.partitions, project_topics() + monitor_topics(app)))
        files = generate(WORK / "files", households=200, seed=2024, today=today)
        roster = asyncio.run(load_roster(settings, files.roster))
        t0 = time.monotonic()
        asyncio.run(publish_persons(settings.bootstrap, args.persons, today))
        print(f"{args.persons} synthetic persons published in {time.monotonic() - t0:.1f} s")
        stays = WORK / "files" / "stays.csv"
        write_stays(stays, roster_people(files.roster, {row for row, _ in roster.rejects}), args.events, today)
        result = asyncio.run(measure(settings, args.events, args.store, stays))
    finally:
        print(kafka_local.down(settings))
    result.update({"persons": args.persons, "events": args.events, "store": args.store,
                   "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    (WORK / "recovery.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
