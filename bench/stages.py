"""The monitor's CPU per event, stage by stage, in one process: no broker, no event loop between the stages.

    .venv/bin/python bench/stages.py [--events N] [--households H] [--batch B] [--repeat R] [--profile FILE]

Generates the mixed workload of bench/pipeline.py (a roster of H households, about N rows spread over every
department feed and intake channel, each feed's rows from its declaration), runs the roster load and the
connectors into memory, then drives the monitor's three handlers (services.monitor.handlers) exactly as the
engine does, batch by batch (B input messages): the registry tables first, then the events through the person
stage, its outputs through the household stage, theirs through the village stage; after each batch every state
key the batch changed is encoded for the changelog (the stage's StateCodec) and each handler's `flush` runs. It
times, best of R runs over fresh handlers:

    raw decode     schemas.codec's decode of every event message (what bench/pipeline.py's raw consumer does
                   besides fetching)
    person         PersonStage.event over the events
    household      HouseholdStage.event over the person stage's outputs, its flush, its changelog encoding
    village        VillageStage.event over the records for the regional rules, its flush, its changelog encoding

and prints each stage's microseconds per event and its ratio to the raw decode. The broker's part (fetching,
sending, acknowledging) is not here: bench/pipeline.py measures the whole. `--profile FILE` writes a cProfile of
one run (pstats format) to FILE. Figures are for comparing before and after a change, in one run.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import roster_households, write_mixed  # noqa: E402

from connectors.departments.bureau import load_snapshot  # noqa: E402
from connectors.framework import EventHandler, run_file  # noqa: E402
from connectors.pseudonym import Pseudonymiser  # noqa: E402
from plumbing.settings import Settings  # noqa: E402
from plumbing.table import render_table  # noqa: E402
from schemas.codec import Codec, default_codec  # noqa: E402
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS  # noqa: E402
from services.demo.oracle import MemoryPublisher  # noqa: E402
from services.demo.population import generate  # noqa: E402
from services.monitor.handlers import Emit, HouseholdStage, PersonStage, Routes, VillageStage  # noqa: E402
from services.monitor.rules import RuleConfig  # noqa: E402
from services.monitor.state import HOUSEHOLD_STATE, PERSON_STATE, VILLAGE_STATE, StateCodec  # noqa: E402
from services.monitor.store import TrackedDict  # noqa: E402

STAGES = ("raw decode", "person", "household", "household profiles", "household changelog", "village")
ROUTES = Routes("bench.household-events", "bench.village-disasters", "alerts.household", "alerts.regional",
                "bench.unmatched")
KEY = b"bench-stages-pseudonymisation-key-0123456789abcdef"


@dataclass(frozen=True)
class Workload:
    persons: list[tuple[str, bytes]]
    households: list[tuple[str, bytes]]
    events: list[tuple[str, bytes, bytes]]  # topic, key, value


def build(work: Path, events: int, households: int, now: dt.datetime) -> Workload:
    """The roster and the mixed workload's files, through the real roster load and connectors, into memory."""
    today = now.date()
    codec = default_codec()
    pseudonymiser = Pseudonymiser(KEY)
    files = generate(work, households=households, seed=2024, today=today)
    registry: list[tuple[str, bytes, bytes | None]] = []

    async def nothing(topic: str) -> Mapping[bytes, bytes]:
        return {}

    summary = asyncio.run(load_snapshot(files.roster, pseudonymiser=pseudonymiser, codec=codec, clock=lambda: now,
                                        read_state=nothing, publisher_factory=lambda: MemoryPublisher(registry)))
    rejected = {row for row, _ in summary.rejects}
    sent: list[tuple[str, bytes, bytes | None]] = []
    for spec, path in write_mixed(work, roster_households(files.roster, rejected), events, today):
        handler = EventHandler(spec, pseudonymiser=pseudonymiser, codec=codec, clock=lambda: now)
        asyncio.run(run_file(spec, path, handler, codec=codec, clock=lambda: now, progress=None,
                             publisher_factory=lambda: MemoryPublisher(sent)))
    persons = [(k.decode(), v) for t, k, v in registry if t == REGISTRY_PERSONS and v is not None]
    homes = [(k.decode(), v) for t, k, v in registry if t == REGISTRY_HOUSEHOLDS and v is not None]
    evs = [(t, k, v) for t, k, v in sent if t.startswith("events.") and v is not None]
    return Workload(persons, homes, evs)


def _changelog(state: TrackedDict[Any], codec: StateCodec[Any], avro: Codec) -> int:
    """Encode every key the batch changed, as the engine writes its changelog; the bytes written."""
    written = 0
    for key in state.take_dirty():
        value = state.get(key)
        if value is not None and not getattr(value, "empty", False):
            written += len(codec.encode(avro, value))
    return written


def _through(stage: HouseholdStage | VillageStage, emits: list[Emit], now: dt.datetime) -> list[Emit]:
    """The stage's outputs for the messages an earlier stage sent it."""
    out: list[Emit] = []
    for e in emits:
        assert e.value is not None
        out += stage.event(e.topic, e.value, now, e.key)
    return out


def run(load: Workload, batch: int, now: dt.datetime, rules: RuleConfig) -> dict[str, float]:
    """Seconds per stage over the whole workload (fresh handlers), and the counts in and out."""
    codec = default_codec()
    grace = dt.timedelta(days=30)
    person_state: TrackedDict[Any] = TrackedDict()
    household_state: TrackedDict[Any] = TrackedDict()
    village_state: TrackedDict[Any] = TrackedDict()
    person = PersonStage({}, person_state, codec=codec, routes=ROUTES, grace=grace)
    household = HouseholdStage({}, household_state, codec=codec, routes=ROUTES, rules=rules, grace=grace)
    village = VillageStage(village_state, codec=codec, routes=ROUTES, rules=rules)
    for key, value in load.persons:
        person.registry(key, value, now, REGISTRY_PERSONS)
    for key, value in load.households:
        household.registry(key, value, now, REGISTRY_HOUSEHOLDS)
    took = dict.fromkeys(STAGES, 0.0)
    counts = {"events": len(load.events), "household in": 0, "village in": 0, "alerts": 0, "regional alerts": 0,
              "profiles": 0, "changelog bytes": 0}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        took[stage] += time.perf_counter() - t0
        return result

    for start in range(0, len(load.events), batch):
        chunk = load.events[start:start + batch]
        timed("raw decode", lambda: [codec.decode(v) for _, _, v in chunk])  # noqa: B023

        def people() -> list[Emit]:
            out: list[Emit] = []
            for topic, key, value in chunk:  # noqa: B023
                out += person.event(topic, value, now, key)
            counts["changelog bytes"] += _changelog(person_state, PERSON_STATE, codec)
            return out

        def villages(emits: list[Emit]) -> list[Emit]:
            out = _through(village, emits, now) + village.flush(now)  # the regional alerts go at the flush
            counts["changelog bytes"] += _changelog(village_state, VILLAGE_STATE, codec)
            return out

        forwarded = timed("person", people)
        to_household = [e for e in forwarded if e.topic == ROUTES.household_events]
        counts["household in"] += len(to_household)
        judged = timed("household", lambda: _through(household, to_household, now))  # noqa: B023
        judged += timed("household profiles", lambda: household.flush(now))
        counts["changelog bytes"] += timed("household changelog",
                                           lambda: _changelog(household_state, HOUSEHOLD_STATE, codec))
        to_village = [e for e in forwarded + judged if e.topic == ROUTES.village_disasters]
        counts["village in"] += len(to_village)
        regional = timed("village", lambda: villages(to_village))  # noqa: B023
        counts["alerts"] += sum(e.topic == ROUTES.alerts_household for e in judged)
        counts["regional alerts"] += sum(e.topic == ROUTES.alerts_regional for e in regional)
        counts["profiles"] += sum(e.topic == ROUTES.profiles for e in judged)
    return {**took, **{k: float(v) for k, v in counts.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--households", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=Settings.model_fields["monitor_max_records"].default,
                        help="input messages per batch (the monitor's POVWATCH_MONITOR_MAX_RECORDS default)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write a cProfile of one run here")
    args = parser.parse_args(argv)
    now = dt.datetime.now(dt.UTC)
    work = Path(tempfile.mkdtemp(prefix="povwatch-bench-stages-"))
    try:
        load = build(work, args.events, args.households, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rules = RuleConfig()
    print(f"{len(load.events):,} events of {len({t for t, _, _ in load.events})} topics, "
          f"{len(load.persons):,} persons, {len(load.households):,} households")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, load, args.batch, now, rules)
        profiler.dump_stats(args.profile)
        print(f"profile: {args.profile}")
    runs = [run(load, args.batch, now, rules) for _ in range(args.repeat)]
    best = {stage: min(r[stage] for r in runs) for stage in STAGES}
    n = len(load.events)
    raw = best["raw decode"]
    total = sum(best[stage] for stage in STAGES[1:])
    rows = [[stage, f"{seconds:.3f}", f"{seconds / n * 1e6:.1f}", f"{seconds / raw:.2f}"]
            for stage, seconds in best.items()]
    rows.append(["monitor (three stages)", f"{total:.3f}", f"{total / n * 1e6:.1f}", f"{total / raw:.2f}"])
    print(render_table(["stage", "seconds (best)", "µs per event", "x raw decode"], rows, right_from=1))
    last = runs[-1]
    print(f"household stage in {last['household in']:.0f}, village stage in {last['village in']:.0f}, "
          f"alerts {last['alerts']:.0f}, regional alerts {last['regional alerts']:.0f}, profiles "
          f"{last['profiles']:.0f}, changelog {last['changelog bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
