"""The monitor's stream engine beside the frameworks it was chosen over, in one run on the same topic.

    .venv/bin/python bench/engines.py [--events N] [--households H] [--port PORT] [--candidates raw,faust,...]

Starts its own Kafka broker (127.0.0.1:PORT, data in var/bench-engines/run, wiped first, stopped at the end),
loads a generated roster of H households and publishes N hospitalisation events through the connector
(bench/pipeline.py's `publish_backlog`: real Avro events keyed by person_key, the topic's partitions as
configured), then runs each candidate on that topic, one after the other:

    raw        a bare aiokafka consumer (no group) reading and decoding the N events: roughly the ceiling of any
               Python consumer; always run (the baseline): before each other candidate and at the end, at least
               three times, the median counts
    faust      faust-streaming, two agents and a table: decode and re-key by household (a topic keyed by
               household), then a per-household update in a Table (changelog topic)
    quix       Quix Streams: decode -> group_by household (repartition topic) -> stateful update (RocksDB state,
               changelog topic), at-least-once
    quix-eos   the same, exactly-once (Kafka transactions)
    engine-core  this engine (services/monitor/engine.py's StageRunner) doing the frameworks' work: two stages,
               decode and re-key with registry.persons as its table, then the per-household update in its state
               (bench/engines_core.py, the project's virtualenv)
    engine     the monitor (`povwatch monitor`: services/monitor/engine.py, three stages, every rule), from
               registry ready to every stage done, as bench/pipeline.py measures its drain

The framework candidates and engine-core do much less than the monitor: no rules, one state update per event;
the frameworks re-key by a person -> household dict read before they start. Each framework runs in a virtualenv
of its own under var/bench-engines/<framework>/venv, made on first use from the pins of pyproject.toml's `bench`
extra (with the project's constraints.txt when the framework accepts them, else with its own dependencies:
quixstreams 3.28.1 needs pydantic < 2.14 and faust-streaming 0.15.3 click < 8.4, the project pins pydantic 2.14.4
and click 8.5.1), as a child process (bench/engines_frameworks.py). The product never
imports them.

Every candidate is checked to have handled every event: raw decoded N; a framework or engine-core decoded N,
updated N times, and its households' final counts read back from its state add up to N; the monitor's person
stage processed N, forwarded N to the household stage, which processed N, none unmatched, duplicate, parked, too
late or dead-lettered. A candidate that falls short is shown as failed, with what it reached, and the script exits 1.

"ratio to raw" is a candidate's events/s over the raw baseline's. The broker, the candidate and this script
share the machine: compare ratios within one run, not absolute numbers between runs. Also written to
var/bench-engines/engines.json.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pipeline import consume_and_decode, free_port, publish_backlog, start_monitor

from plumbing import kafka_local
from plumbing.kafka_security import client_options
from plumbing.processes import Samples, metric, wait_until
from plumbing.settings import Settings, load_settings
from plumbing.table import render_table
from schemas.codec import default_codec
from schemas.errors import EnvironmentProblem, PovwatchError
from schemas.topics import REGISTRY_PERSONS
from services.demo.run import monitor_settled

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "bench-engines"
RUN = WORK / "run"  # wiped at every run; the virtualenvs beside it are kept
FRAMEWORKS_SCRIPT = Path(__file__).resolve().with_name("engines_frameworks.py")
CORE_SCRIPT = Path(__file__).resolve().with_name("engines_core.py")
CANDIDATES = ("raw", "faust", "quix", "quix-eos", "engine-core", "engine")
RAW_RUNS = 3  # at least: one before each other candidate, the rest at the end
# candidate -> (virtualenv name, distribution of pyproject.toml's `bench` extra)
FRAMEWORKS = {"faust": ("faust", "faust-streaming"), "quix": ("quix", "quixstreams"),
              "quix-eos": ("quix", "quixstreams")}
WORK_DONE = {"raw": "consume + decode", "faust": "2 agents + table", "quix": "group_by + state, at-least-once",
             "quix-eos": "group_by + state, exactly-once", "engine-core": "2 stages, the frameworks' work",
             "engine": "3 stages, every rule"}


@dataclass
class Outcome:
    candidate: str
    label: str
    events: int  # events the candidate handled (its own count)
    seconds: float | None
    ok: bool
    problem: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


# --- the framework virtualenvs --------------------------------------------------------------------------------


def bench_pins(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Distribution name -> requirement, from the `bench` optional dependencies."""
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["bench"]
    pins = {}
    for requirement in extra:
        name = requirement.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower()
        pins[name] = requirement
    return pins


def constraint_of(name: str, constraints: Path = ROOT / "constraints.txt") -> str:
    """The project's pin of `name` (e.g. fastavro==1.13.1), so a framework decodes with the same fastavro."""
    for line in constraints.read_text().splitlines():
        if line.split("==")[0].strip().lower() == name.lower():
            return line.strip()
    return name


def framework_venv(venv_name: str, requirement: str) -> tuple[Path, bool]:
    """var/bench-engines/<venv_name>/venv with `requirement` and the project's fastavro: (its python, whether
    the project's constraints.txt applied). Made once; made again when the requirement changes."""
    home = WORK / venv_name / "venv"
    python = home / "bin" / "python"
    wanted = [requirement, constraint_of("fastavro")]
    marker = home / "povwatch-bench.json"
    if python.exists() and marker.exists():
        made = json.loads(marker.read_text())
        if made.get("requires") == wanted:
            return python, bool(made["constrained"])
    shutil.rmtree(home, ignore_errors=True)
    print(f"making {home.relative_to(ROOT)} ({', '.join(wanted)}); once", flush=True)
    done = subprocess.run([sys.executable, "-m", "venv", str(home)], capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"cannot make a virtualenv at {home}: {done.stderr.strip()[-500:]}")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    constrained = True
    done = subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), *wanted], capture_output=True, text=True)
    if done.returncode != 0:  # the framework's own pins conflict with the project's: its own resolution
        print(f"{requirement} does not install with constraints.txt; installing it with its own dependencies",
              flush=True)
        constrained = False
        done = subprocess.run([*pip, *wanted], capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"cannot install {requirement} in {home}: {done.stderr.strip()[-800:]}")
    marker.write_text(json.dumps({"requires": wanted, "constrained": constrained}) + "\n")
    return python, constrained


# --- the candidates -------------------------------------------------------------------------------------------


async def topic_size(bootstrap: str, topic: str) -> int:
    """Messages on `topic` (sum of its partitions' end offsets; a fresh topic, nothing deleted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(), enable_auto_commit=False)
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


async def read_persons(bootstrap: str, expected: int, timeout: float = 120.0) -> dict[str, str]:
    """person_key -> household_id, from registry.persons (what the framework candidates re-key by)."""
    codec = default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    persons: dict[str, str] = {}
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(REGISTRY_PERSONS, p)
               for p in sorted(consumer.partitions_for_topic(REGISTRY_PERSONS) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            if time.monotonic() > deadline:
                raise EnvironmentProblem(f"read only {len(persons)} of {expected} persons of {REGISTRY_PERSONS}")
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for m in messages:
                    if m.value is not None:
                        record = codec.decode(m.value).record
                        persons[record["person_key"]] = record["household_id"]
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    return persons


def run_raw(bootstrap: str, topic: str, events: int) -> Outcome:
    label = f"raw aiokafka {_version('aiokafka')} ({WORK_DONE['raw']})"
    try:  # consume_and_decode returns only once it decoded `events` messages of the topic (which holds that many)
        seconds = asyncio.run(consume_and_decode(bootstrap, topic, events))
    except PovwatchError as exc:
        return Outcome("raw", label, 0, None, False, str(exc))
    return Outcome("raw", label, events, seconds, True)


def run_framework(candidate: str, python: Path, constrained: bool, bootstrap: str, topic: str, events: int,
                  persons: Path, partitions: int, timeout: float) -> Outcome:
    dist = FRAMEWORKS[candidate][1]
    label = f"{dist} {_venv_version(python, dist)} ({WORK_DONE[candidate]})"
    args = [str(FRAMEWORKS_SCRIPT), candidate, "--persons", str(persons)]
    detail = {"constrained": constrained, "venv": str(python.parent.parent.relative_to(ROOT))}
    return run_child(candidate, label, python, args, bootstrap, topic, events, partitions, timeout, detail)


def run_core(bootstrap: str, topic: str, events: int, partitions: int, max_records: int, timeout: float) -> Outcome:
    label = f"povwatch engine ({WORK_DONE['engine-core']})"
    args = [str(CORE_SCRIPT), "--max-records", str(max_records)]
    return run_child("engine-core", label, Path(sys.executable), args, bootstrap, topic, events, partitions, timeout,
                     {})


def run_child(candidate: str, label: str, python: Path, args: list[str], bootstrap: str, topic: str, events: int,
              partitions: int, timeout: float, detail: dict[str, Any]) -> Outcome:
    """A candidate in a child process that writes the result of engines_frameworks.Tally."""
    work, result = RUN / candidate, RUN / f"{candidate}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [str(python), *args, "--bootstrap", bootstrap, "--topic", topic, "--events", str(events),
           "--partitions", str(partitions), "--work", str(work), "--result", str(result)]
    log_path = RUN / f"{candidate}.log"
    result.unlink(missing_ok=True)  # only what this child writes counts
    with open(log_path, "wb") as log:
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
    detail["exit"] = code
    if not result.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-8:]
        return Outcome(candidate, label, 0, None, False,
                       f"exited {code} without a result (log {_shown(log_path)}): " + " | ".join(tail),
                       detail)
    got = json.loads(result.read_text())
    detail.update(got)
    handled = min(got["decoded"], got["updated"], got["state_total"])
    if not got["complete"] or (got["decoded"], got["updated"], got["state_total"]) != (events, events, events):
        return Outcome(candidate, label, handled, None, False,
                       f"decoded {got['decoded']}, updated {got['updated']}, state adds up to {got['state_total']}"
                       f" of {events}" + (f" (no progress for {got['stalled_s']:.0f} s)" if "stalled_s" in got
                                          else ""), detail)
    return Outcome(candidate, label, events, float(got["seconds"]), True, "", detail)


def run_engine(settings: Settings, events: int, registry_persons: int, timeout: float) -> Outcome:
    label = f"povwatch engine ({WORK_DONE['engine']})"
    engine = settings.model_copy(update={"monitor_app_id": f"povwatch-engines-{uuid.uuid4().hex[:8]}",
                                         "monitor_metrics_port": free_port()})
    monitor = start_monitor(engine, RUN / "monitor.log")
    try:
        t_start = time.perf_counter()
        wait_until(engine.monitor_metrics_port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=600,
                   child=monitor, what=f"the monitor to load {registry_persons} registry persons")
        t_ready = time.perf_counter()
        settled, stage_done = monitor_settled(events), {}

        def drained(s: Samples) -> bool:  # and when the person and household stages had handled every event
            for stage in ("person", "household"):
                if stage not in stage_done and metric(s, "povwatch_monitor_processed_total", stage=stage) >= events:
                    stage_done[stage] = time.perf_counter() - t_ready
            return bool(settled(s))

        try:
            final = wait_until(engine.monitor_metrics_port, drained, timeout=timeout, child=monitor,
                               what=f"the monitor to drain {events} events", interval=0.1)
        except EnvironmentProblem as exc:
            return Outcome("engine", label, 0, None, False, str(exc).splitlines()[0][:600])
        t_done = time.perf_counter()
    finally:
        monitor.stop()

    def m(name: str, **labels: str) -> int:
        return int(metric(final, name, **labels))

    counts = {
        "person_processed": m("povwatch_monitor_processed_total", stage="person"),
        "forwarded_to_household": m("povwatch_monitor_forwarded_total", to="household"),
        "household_processed": m("povwatch_monitor_processed_total", stage="household"),
        "unmatched": m("povwatch_events_unmatched_total"), "duplicates": m("povwatch_events_duplicate_total"),
        "parked": m("povwatch_events_parked_total"), "too_late": m("povwatch_events_too_late_total"),
        "dead_letters": m("povwatch_monitor_dead_letters_total"), "alerts": m("povwatch_alerts_total"),
        "forwarded_to_village": m("povwatch_monitor_forwarded_total", to="village"),
        "recoveries": m("povwatch_monitor_recoveries_total"), "ready_s": t_ready - t_start,
        "stage_done_s": {**stage_done, "village": t_done - t_ready},
    }
    every = (counts["person_processed"], counts["forwarded_to_household"], counts["household_processed"])
    lost = {k: counts[k] for k in ("unmatched", "duplicates", "parked", "too_late", "dead_letters") if counts[k]}
    if every != (events, events, events) or lost:
        return Outcome("engine", label, min(every), None, False,
                       f"person stage processed {every[0]}, forwarded {every[1]}, household stage processed "
                       f"{every[2]} of {events}" + (f"; {lost}" if lost else ""), counts)
    return Outcome("engine", label, events, t_done - t_ready, True, "", counts)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _venv_version(python: Path, dist: str) -> str:
    done = subprocess.run([str(python), "-c", f"from importlib.metadata import version; print(version({dist!r}))"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


# --- the run --------------------------------------------------------------------------------------------------


def bench(base: Settings, events: int, households: int, port: int, candidates: list[str],
          timeout: float) -> dict[str, Any]:
    # the virtualenvs first (slow once, not measured); a framework that cannot be installed is reported failed
    venvs: dict[str, tuple[Path, bool] | str] = {}
    pins = bench_pins()
    for candidate in candidates:
        if candidate in FRAMEWORKS:
            venv_name, dist = FRAMEWORKS[candidate]
            try:
                venvs[candidate] = framework_venv(venv_name, pins[dist])
            except (EnvironmentProblem, KeyError) as exc:
                venvs[candidate] = f"not installed: {exc}"

    settings = base.model_copy(update={"bootstrap": f"127.0.0.1:{port}", "kafka_data": RUN / "kafka"})
    print(kafka_local.down(settings))  # a previous run's broker, if one was left running
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    outcomes: list[Outcome] = []
    raw: list[Outcome] = []
    try:
        print(kafka_local.up(settings))
        backlog = publish_backlog(settings, RUN, events, households)
        topic = backlog.topics[0]
        on_topic = asyncio.run(topic_size(settings.bootstrap, topic))
        if on_topic != events:
            raise EnvironmentProblem(f"{topic} holds {on_topic} messages, not the {events} published")
        persons = RUN / "persons.json"
        persons.write_text(json.dumps(asyncio.run(read_persons(settings.bootstrap, backlog.persons))))
        for candidate in [c for c in candidates if c != "raw"]:
            raw.append(run_raw(settings.bootstrap, topic, events))
            print(f"running {candidate} on {events} events of {topic}", flush=True)
            venv = venvs.get(candidate)
            if isinstance(venv, str):
                outcome = Outcome(candidate, f"{FRAMEWORKS[candidate][1]} ({WORK_DONE[candidate]})", 0, None, False,
                                  venv)
            elif venv is not None:
                outcome = run_framework(candidate, venv[0], venv[1], settings.bootstrap, topic, events, persons,
                                        settings.partitions, timeout)
            elif candidate == "engine-core":
                outcome = run_core(settings.bootstrap, topic, events, settings.partitions,
                                   settings.monitor_max_records, timeout)
            else:
                outcome = run_engine(settings, events, backlog.registry_persons, timeout)
            print(f"  {outcome.label}: " + (f"{outcome.seconds:.1f} s" if outcome.ok else f"FAILED: {outcome.problem}"),
                  flush=True)
            outcomes.append(outcome)
        raw.append(run_raw(settings.bootstrap, topic, events))  # one at the end
        while len(raw) < RAW_RUNS:
            raw.append(run_raw(settings.bootstrap, topic, events))
    finally:
        print(kafka_local.down(settings))
    good = [r.seconds for r in raw if r.ok and r.seconds]
    if not good:
        raise EnvironmentProblem("the raw consumer never read the topic: " + "; ".join(r.problem for r in raw))
    baseline = Outcome("raw", raw[0].label, events, statistics.median(good), True, "",
                       {"runs_s": [r.seconds for r in raw]})
    return {"events": events, "households": households, "topic": topic, "partitions": settings.partitions,
            "candidates": [asdict(o) for o in [baseline, *outcomes]],
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "kafka": settings.kafka_version},
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def report(result: dict[str, Any]) -> str:
    rows = []
    raw = result["candidates"][0]
    raw_rate = raw["events"] / raw["seconds"]
    problems = []
    for c in result["candidates"]:
        if c["ok"]:
            rate = c["events"] / c["seconds"]
            rows.append([c["label"], f"{c['events']:,}", f"{c['seconds']:.2f}", f"{rate:,.0f}",
                         f"{rate / raw_rate:.3f}"])
        else:
            rows.append([c["label"], f"{c['events']:,} of {result['events']:,}", "-", "-", "FAILED"])
            problems.append(f"{c['candidate']}: {c['problem']}")
    runs = ", ".join(f"{s:.2f}" for s in raw["detail"]["runs_s"] if s)
    engine = next((c for c in result["candidates"] if c["candidate"] == "engine" and c["ok"]), None)
    if engine is not None:
        d = engine["detail"]
        done = d["stage_done_s"]
        problems.append(
            f"engine, every stage on one event loop: person stage (decode, registry join, re-key) done after "
            f"{done.get('person', 0):.1f} s, household stage (household rules, state) after "
            f"{done.get('household', 0):.1f} s, village stage (regional rules, {d['forwarded_to_village']:,} records) "
            f"after {done['village']:.1f} s; {d['alerts']:,} alerts, {d['recoveries']} recoveries")
    m = result["machine"]
    return "\n".join([
        render_table(["candidate", "events", "seconds", "events/s", "ratio to raw"], rows, right_from=1),
        "",
        *problems,
        f"raw: median of {len(raw['detail']['runs_s'])} runs, one before each other candidate, the rest at the end "
        f"({runs} s)",
        f"topic: {result['topic']}, {result['events']:,} Avro events, {result['partitions']} partitions; "
        f"{result['households']} roster households",
        f"machine: {m['cores']} cores, Python {m['python']}, Kafka {m['kafka']}; one run on a shared machine, "
        "compare ratios, not absolute numbers",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="povwatch: the monitor's stream engine beside faust-streaming and "
                                                 "Quix Streams, on one topic, in one run")
    parser.add_argument("--events", type=int, default=200_000, help="events on the topic (200000)")
    parser.add_argument("--households", type=int, default=20_000,
                        help="roster households (20000: ten stays per household at 200000 events; at least 200)")
    parser.add_argument("--port", type=int, default=19592, help="port of the bench's own broker (19592)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help=f"comma-separated, in this order (default: {','.join(CANDIDATES)})")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds a candidate may take before it counts as failed (1800)")
    args = parser.parse_args(argv)
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
    if args.events < 1 or args.households < 200:
        parser.error("--events must be >= 1 and --households >= 200")
    try:
        result = bench(load_settings(), args.events, args.households, args.port, candidates, args.timeout)
    except PovwatchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    print("\n" + report(result))
    (WORK / "engines.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {(WORK / 'engines.json').relative_to(ROOT)}")
    return 0 if all(c["ok"] for c in result["candidates"]) else 1


if __name__ == "__main__":
    sys.exit(main())
