"""The `engine-core` candidate of bench/engines.py: the monitor's engine doing the frameworks' work, no rules.

    .venv/bin/python bench/engines_core.py --bootstrap HOST:PORT --topic TOPIC --events N --partitions P
        --work DIR --result FILE

Two stages on services/monitor/engine.py's StageRunner (consumer groups, batches, outputs -> changelog -> offsets),
the same work as the framework candidates (bench/engines_frameworks.py):

    route    registry.persons as its table (read to the end before the inputs open, as the monitor's person
             stage); each event decoded (schemas.codec) and sent on keyed by its household (JSON)
    update   a per-household state (events counted, out-of-pocket summed) written to its changelog once per
             key per batch

So its figure beside the frameworks' compares engines doing the same thing; the `engine` candidate is the monitor
itself with every rule. The result is the frameworks' (decoded, updated, state read back); "seconds" from the
first event decoded to the N-th update.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from engines_frameworks import Tally, finish, router, watchdog

from plumbing.kafka_io import ensure_topics
from plumbing.kafka_security import client_options
from schemas.codec import default_codec
from schemas.topics import REGISTRY_PERSONS, TopicSpec
from services.monitor.engine import StageRunner, StageSpec, TrackedDict
from services.monitor.handlers import Emit
from services.monitor.state import StateCodec


class JsonState(StateCodec[dict[str, Any]]):
    """The update stage's state in its changelog: JSON (as the frameworks' tables hold it)."""

    def encode(self, codec: Any, state: dict[str, Any]) -> bytes:
        return json.dumps(state).encode()

    def decode(self, codec: Any, data: bytes) -> dict[str, Any]:
        return dict(json.loads(data))


JSON_STATE = JsonState("json", lambda s: s, lambda r: r)


class _Handler:
    """No table, no timers, nothing left at the end of a batch, nothing waiting."""

    def registry(self, key: str, value: bytes | None, now: dt.datetime, topic: str = "") -> list[Emit]:
        return []

    def sweep(self, now: dt.datetime) -> list[Emit]:
        return []

    def flush(self, now: dt.datetime) -> list[Emit]:
        return []

    def forget(self) -> None:
        return None

    def pending(self) -> int:
        return 0


class Route(_Handler):
    """decode + re-key, with the persons table of its partition."""

    name = "route"

    def __init__(self, table: dict[str, Any], rekeyed: str, tally: Tally) -> None:
        self.table, self.rekeyed = table, rekeyed
        self.codec = default_codec()
        self.route = router(table, tally)

    def registry(self, key: str, value: bytes | None, now: dt.datetime, topic: str = "") -> list[Emit]:
        if value is None:
            self.table.pop(key, None)
        else:
            self.table[key] = self.codec.decode(value).record["household_id"]
        return []

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]:
        slim = self.route(value)
        return [Emit(self.rekeyed, slim["household_id"].encode(), json.dumps(slim).encode())]


class Update(_Handler):
    """The per-household update, in the partition's state (written to the changelog by the engine)."""

    name = "update"

    def __init__(self, state: TrackedDict[dict[str, Any]], tally: Tally, stopping: asyncio.Event) -> None:
        self.state, self.tally, self.stopping = state, tally, stopping

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]:
        slim = json.loads(value)
        household = slim["household_id"]
        held = self.state.get(household) or {"n": 0, "oop_fen": 0}
        self.state[household] = {"n": held["n"] + 1, "oop_fen": held["oop_fen"] + slim["oop_fen"],
                                 "last": slim["event_id"]}
        tally = self.tally
        tally.updated += 1
        tally.final[household] = self.state[household]["n"]
        if tally.updated >= tally.events and tally.last is None:
            tally.last = time.perf_counter()
            self.stopping.set()  # the runner ends after this batch
        return []


async def run(args: argparse.Namespace, tally: Tally) -> None:
    tag = f"bench-engine-core-{dt.datetime.now(dt.UTC):%H%M%S}"
    rekeyed, codec, stopping = f"{tag}.by-household", default_codec(), asyncio.Event()
    await ensure_topics(args.bootstrap, args.partitions, [
        TopicSpec(rekeyed), TopicSpec(f"{tag}.route-state", compacted=True),
        TopicSpec(f"{tag}.update-state", compacted=True)])
    specs: list[StageSpec[Any]] = [
        StageSpec("route", f"{tag}.route", (REGISTRY_PERSONS,), (args.topic,), f"{tag}.route-state", JSON_STATE,
                  lambda table, state: Route(table, rekeyed, tally), "persons"),
        StageSpec("update", f"{tag}.update", (), (rekeyed,), f"{tag}.update-state", JSON_STATE,
                  lambda table, state: Update(state, tally, stopping)),
    ]

    async def producer() -> AIOKafkaProducer:  # as the monitor makes its producers (services/monitor/app.py)
        made = AIOKafkaProducer(bootstrap_servers=args.bootstrap, **client_options(),
                                client_id=tag, acks="all", enable_idempotence=True,
                                linger_ms=5, request_timeout_ms=15_000, max_batch_size=256 * 1024)
        await made.start()
        return made

    runners = [StageRunner(spec, bootstrap=args.bootstrap, producer_factory=producer, codec=codec,
                           clock=lambda: dt.datetime.now(dt.UTC), stopping=stopping, max_records=args.max_records)
               for spec in specs]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stopping.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the engine-core candidate of bench/engines.py")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--max-records", type=int, default=10_000)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--stall", type=float, default=60.0)
    args = parser.parse_args(argv)
    tally = Tally(args.events)
    watchdog(tally, "engine-core", args.result, args.stall)
    asyncio.run(run(args, tally))
    complete = tally.last is not None
    finish(args.result, tally.result("engine-core", complete), 0 if complete else 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
