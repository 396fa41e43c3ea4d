"""The framework candidates of bench/engines.py, each run in its own virtualenv (var/bench-engines/<name>/venv).

    <venv>/bin/python bench/engines_frameworks.py faust|quix|quix-eos --bootstrap HOST:PORT --topic TOPIC
        --events N --persons FILE --partitions P --work DIR --result FILE

Not part of the product, and not run with the project's virtualenv: it imports only the standard library, fastavro
(through `schemas.codec`, the project's own decoder, found on PYTHONPATH) and the framework. Each candidate does
the same work on the same topic of Avro events keyed by person_key:

    decode      the event (schemas.codec, as the monitor and the raw baseline do)
    re-key      by household (person_key -> household_id from FILE, read from registry.persons before the run)
    update      a per-household state (events counted, out-of-pocket summed) in the framework's table, with its
                changelog topic

faust-streaming: two agents (decode + send to a topic keyed by household; update a Table). Quix Streams: decode
-> group_by household (its repartition topic) -> stateful update (RocksDB, changelog), at-least-once or
exactly-once. "seconds" runs from the first event decoded to the N-th update. The result (JSON) says how many
events were decoded, how many updates ran, and the sum of the households' final counts as read back from the
state: a candidate that lost or repeated events, or whose state did not keep its updates, does not add up to N.
A candidate that makes no progress for --stall seconds writes what it reached and exits 3.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from schemas.codec import default_codec


class Tally:
    """What a candidate did, shared with the watchdog thread."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.decoded = 0
        self.updated = 0
        self.first: float | None = None
        self.last: float | None = None
        self.final: dict[str, int] = {}  # household -> its count as last read back from the state

    def result(self, candidate: str, complete: bool) -> dict[str, Any]:
        seconds = (self.last - self.first) if self.first is not None and self.last is not None else None
        return {"candidate": candidate, "complete": complete, "events": self.events, "decoded": self.decoded,
                "updated": self.updated, "households": len(self.final), "state_total": sum(self.final.values()),
                "seconds": seconds}


def finish(path: Path, result: dict[str, Any], code: int) -> None:
    """Write the result and leave at once: a framework's shutdown is not measured, and some hang in it."""
    path.write_text(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def watchdog(tally: Tally, candidate: str, result: Path, stall: float) -> None:
    """Exit 3 with what was reached when nothing moves for `stall` seconds."""
    def watch() -> None:
        seen, moved = -1, time.monotonic()
        while True:
            time.sleep(1.0)
            now = tally.decoded + tally.updated
            if now != seen:
                seen, moved = now, time.monotonic()
            elif time.monotonic() - moved > stall:
                finish(result, {**tally.result(candidate, False), "stalled_s": stall}, 3)

    threading.Thread(target=watch, daemon=True, name="watchdog").start()


def router(persons: dict[str, str], tally: Tally) -> Any:
    """decode + re-key: the event's slim record (JSON-able) with its household."""
    codec = default_codec()

    def route(value: bytes) -> dict[str, Any]:
        if tally.first is None:
            tally.first = time.perf_counter()
        record = codec.decode(value).record
        tally.decoded += 1
        return {"household_id": persons[record["person_key"]], "event_id": record["event_id"],
                "person_key": record["person_key"], "admission_date": record["admission_date"].isoformat(),
                "oop_fen": int(record["out_of_pocket"] * 100)}

    return route


def run_faust(args: argparse.Namespace, persons: dict[str, str], tally: Tally) -> None:
    import faust

    route = router(persons, tally)
    app = faust.App(f"bench-faust-{args.tag}", broker=f"kafka://{args.bootstrap}", store="memory://",
                    topic_partitions=args.partitions, web_enabled=False, datadir=str(args.work / "faust"),
                    consumer_auto_offset_reset="earliest")
    events = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    # internal: Faust creates it at start-up, as it does for a group_by (the broker does not auto-create topics)
    by_household = app.topic(f"bench-faust-{args.tag}-by-household", key_serializer="raw", value_serializer="json",
                             partitions=args.partitions, internal=True)
    # the app's default serializers: keys raw (bytes), values JSON
    households = app.Table("households", partitions=args.partitions)

    @app.agent(events)
    async def rekey(stream: Any) -> None:
        async for value in stream:
            slim = route(value)
            await by_household.send(key=slim["household_id"].encode(), value=slim)

    @app.agent(by_household)
    async def update(stream: Any) -> None:
        async for key, slim in stream.items():
            held = households.get(key) or {"n": 0, "oop_fen": 0}
            state = {"n": held["n"] + 1, "oop_fen": held["oop_fen"] + slim["oop_fen"], "last": slim["event_id"]}
            households[key] = state
            tally.updated += 1
            tally.final[key.decode()] = households[key]["n"]
            if tally.updated >= tally.events:
                tally.last = time.perf_counter()
                finish(args.result, tally.result(args.candidate, True), 0)

    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


def run_quix(args: argparse.Namespace, persons: dict[str, str], tally: Tally, guarantee: str) -> None:
    from quixstreams import Application

    route = router(persons, tally)
    app = Application(broker_address=args.bootstrap, consumer_group=f"bench-quix-{args.tag}",
                      auto_offset_reset="earliest", state_dir=str(args.work / "state"), loglevel="WARNING",
                      processing_guarantee=guarantee, use_changelog_topics=True)
    events = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")

    def update(slim: dict[str, Any], state: Any) -> dict[str, Any]:
        n = state.get("n", 0) + 1
        state.set("n", n)
        state.set("oop_fen", state.get("oop_fen", 0) + slim["oop_fen"])
        state.set("last", slim["event_id"])
        tally.updated += 1
        tally.final[slim["household_id"]] = state.get("n", 0)
        if tally.updated >= tally.events and tally.last is None:
            tally.last = time.perf_counter()
            app.stop()
        return slim

    sdf = app.dataframe(events)
    sdf = sdf.apply(route)
    sdf = sdf.group_by("household_id")
    sdf = sdf.apply(update, stateful=True)
    app.run()
    complete = tally.last is not None
    finish(args.result, tally.result(args.candidate, complete), 0 if complete else 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one framework candidate of bench/engines.py")
    parser.add_argument("candidate", choices=("faust", "quix", "quix-eos"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--persons", type=Path, required=True, help="JSON: person_key -> household_id")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--stall", type=float, default=60.0)
    args = parser.parse_args(argv)
    args.tag = f"{args.candidate}-{dt.datetime.now(dt.UTC):%H%M%S}-{os.getpid()}"
    args.work.mkdir(parents=True, exist_ok=True)
    persons = json.loads(args.persons.read_text())
    tally = Tally(args.events)
    watchdog(tally, args.candidate, args.result, args.stall)
    if args.candidate == "faust":
        run_faust(args, persons, tally)
    else:
        run_quix(args, persons, tally, "exactly-once" if args.candidate == "quix-eos" else "at-least-once")
    finish(args.result, tally.result(args.candidate, False), 3)  # the framework returned before N updates
    return 3


if __name__ == "__main__":
    sys.exit(main())
