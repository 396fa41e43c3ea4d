"""The monitor with 1, 2 and 4 worker processes in one consumer group, and its memory per million registry persons
in each table store, in one run on a real broker.

    .venv/bin/python bench/workers.py [--events 60000] [--households 5000] [--workers 1,2,4] [--partitions 12]
                                      [--persons 1000000] [--port 19892] [--work DIR]

Starts its own broker (127.0.0.1:PORT, `--partitions` per topic, data in `--work` (var/bench-workers), wiped
first; the controller takes PORT + 1, the workers' /metrics PORT + 2 ...), loads a roster of H households and
publishes about N rows spread over every department feed (bench/pipeline.py's `mixed` workload) with no monitor
running. Then:

  workers   for each count W of `--workers`: W `povwatch monitor` processes with one new app id (one consumer
            group per stage, the topics' partitions split between them) on that backlog, timed from start to
            every worker ready (registry read) and to every event handled (the workers' /metrics merged);
            events/s of the drain and CPU seconds of each worker
  memory    the resident memory of one worker when ready, with the `memory` and the `rocksdb` store, on the
            roster alone and after `--persons` synthetic persons are added to registry.persons: the difference
            over the persons added is the memory per 1,000,000 registry persons (`--persons 0` skips it)

Every worker count reads the same backlog from the beginning, so the drain rates compare; the broker, the
workers and this script share the machine's cores, so on a machine with fewer cores than workers the extra
workers only share the same CPU (the report says how busy the cores were). Written to workers.json and
workers.txt in the work directory.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "bench")):  # run as a script: the project's packages and the bench modules
    if _path not in sys.path:
        sys.path.insert(0, _path)

from measure import machine_busy, proc_stats  # noqa: E402
from pipeline import (  # noqa: E402
    all_ready,
    merged_metrics,
    publish_backlog,
    publish_synthetic_persons,
    start_monitor,
    wait_workers,
)

from plumbing import kafka_local  # noqa: E402
from plumbing.processes import ChildProcess, metric, scrape  # noqa: E402
from plumbing.settings import Settings, load_settings  # noqa: E402
from plumbing.table import render_table  # noqa: E402
from schemas.errors import EnvironmentProblem, PovwatchError  # noqa: E402
from services.demo.run import monitor_settled  # noqa: E402

WORK = ROOT / "var" / "bench-workers"
MEMORY_RULE_MB = 500  # memory per million registry persons above which the rocksdb store is the documented choice


def start_workers(settings: Settings, count: int, store: str, port: int, tag: str) -> tuple[list[ChildProcess],
                                                                                            list[int]]:
    """`count` monitor workers of one new app id, /metrics on port, port + 1, ..."""
    app_id = f"povwatch-workers-{tag}-{uuid.uuid4().hex[:8]}"
    children, ports = [], []
    for i in range(count):
        worker = settings.model_copy(update={"monitor_app_id": app_id, "monitor_metrics_port": port + i})
        children.append(start_monitor(worker, WORK / "logs" / f"{tag}-{i}.log", store=store,
                                      store_dir=WORK / "store" / f"{tag}-{i}"))
        ports.append(port + i)
    return children, ports


def run_workers(settings: Settings, count: int, events: int, port: int) -> dict[str, Any]:
    """`count` workers on the backlog: seconds to ready and to drained, events/s, CPU and RSS per worker."""
    cpu0 = machine_busy()
    start = time.perf_counter()
    children, ports = start_workers(settings, count, "memory", port, f"w{count}")
    try:
        wait_workers(children, f"{count} workers to be ready", lambda: all_ready(ports), timeout=1800)
        ready = time.perf_counter() - start
        settled = monitor_settled(events)
        wait_workers(children, f"{count} workers to handle {events} events", lambda: settled(merged_metrics(ports)),
                     timeout=3600 + events / 50)
        drained = time.perf_counter() - start
        cpu1 = machine_busy()
        stats = [proc_stats(c.proc.pid) for c in children]
        final = merged_metrics(ports)
    finally:
        for child in children:
            child.stop()
    return {"workers": count, "events": events, "ready_s": ready, "drained_s": drained, "drain_s": drained - ready,
            "events_per_s": events / (drained - ready), "events_per_s_from_start": events / drained,
            "cpu_s": [s.cpu_s if s else None for s in stats], "rss_mb": [s.rss_mb if s else None for s in stats],
            "alerts": metric(final, "povwatch_alerts_total"),
            "busy_cores": (cpu1.busy - cpu0.busy) / (cpu1.at - cpu0.at)}


def ready_rss(settings: Settings, store: str, port: int, tag: str) -> dict[str, Any]:
    """One worker started on the registry as it is: RSS when ready, and the seconds to ready."""
    start = time.perf_counter()
    children, ports = start_workers(settings, 1, store, port, tag)
    try:
        wait_workers(children, f"a {store} worker to be ready", lambda: all_ready(ports), timeout=3600)
        seconds = time.perf_counter() - start
        stats = proc_stats(children[0].proc.pid)
        registry = metric(scrape(ports[0]), "povwatch_registry_entries", table="persons")
    finally:
        children[0].stop()
    if stats is None:
        raise EnvironmentProblem(f"the {store} worker vanished before its memory was read")
    return {"store": store, "rss_mb": stats.rss_mb, "ready_s": seconds, "registry_persons": registry}


def per_million(small: dict[str, Any], big: dict[str, Any]) -> float:
    """MB of resident memory per 1,000,000 registry persons, from two ready workers of one store."""
    persons = big["registry_persons"] - small["registry_persons"]
    return (big["rss_mb"] - small["rss_mb"]) / persons * 1e6 if persons > 0 else float("nan")


def bench(events: int, households: int, counts: list[int], partitions: int, persons: int,
          port: int) -> dict[str, Any]:
    settings = load_settings().model_copy(update={
        "bootstrap": f"127.0.0.1:{port}", "kafka_data": WORK / "kafka", "partitions": partitions})
    print(kafka_local.down(settings))
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    metrics_port = port + 2
    runs, memory = [], {}
    try:
        print(kafka_local.up(settings), flush=True)
        backlog = publish_backlog(settings, WORK, events, households, 0, "mixed")
        for count in counts:
            runs.append(run_workers(settings, count, backlog.events, metrics_port))
            print(f"{count} worker(s): {runs[-1]['events_per_s_from_start']:,.0f} events/s", flush=True)
        if persons:
            memory["memory_small"] = ready_rss(settings, "memory", metrics_port, "mem-small")
            memory["rocksdb_small"] = ready_rss(settings, "rocksdb", metrics_port, "rdb-small")
            asyncio.run(publish_synthetic_persons(settings.bootstrap, persons, dt.date.today()))
            memory["memory_big"] = ready_rss(settings, "memory", metrics_port, "mem-big")
            memory["rocksdb_big"] = ready_rss(settings, "rocksdb", metrics_port, "rdb-big")
            print(f"memory: {memory}", flush=True)
    finally:
        print(kafka_local.down(settings))
    per = {store: per_million(memory[f"{store}_small"], memory[f"{store}_big"])
           for store in ("memory", "rocksdb")} if persons else {}
    return {"events": backlog.events, "households": households, "partitions": partitions, "runs": runs,
            "memory": memory, "mb_per_million": per, "cores": os.cpu_count(),
            "load_average": os.getloadavg(), "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def cpu_per_event(run: dict[str, Any]) -> float:
    """CPU seconds the workers spent per event, start to drained (registry load included): what a worker costs
    whatever share of a busy machine it got."""
    return float(sum(c for c in run["cpu_s"] if c is not None)) / float(run["events"])


def report(result: dict[str, Any]) -> str:
    one = result["runs"][0]["events_per_s_from_start"]
    rows = [[str(r["workers"]), f"{r['ready_s']:.1f}", f"{r['drained_s']:.1f}", f"{r['events_per_s_from_start']:,.0f}",
             f"{r['events_per_s_from_start'] / one:.2f}", f"{r['events_per_s']:,.0f}",
             " ".join(f"{c:.0f}" for c in r["cpu_s"] if c is not None),
             f"{cpu_per_event(r) * 1000:.2f}",
             " ".join(f"{m:.0f}" for m in r["rss_mb"] if m is not None), f"{r['busy_cores']:.2f}"]
            for r in result["runs"]]
    out = [render_table(["workers", "all ready s", "drained s", "events/s", "x one", "events/s after all ready",
                         "CPU s each", "CPU ms per event", "RSS MB each", "machine busy cores"], rows,
                        right_from=1),
           f"{result['events']:,} events of every feed, {result['partitions']} partitions, "
           f"{result['households']:,} households; events/s from the workers' start to every event handled (the "
           f"workers start on the backlog and rebalance as they join); {result['cores']} cores, load average at "
           f"the end {result['load_average'][0]:.1f} (shared); one run"]
    if result["memory"]:
        mem = result["memory"]
        rows = [[store, f"{mem[f'{store}_small']['registry_persons']:,.0f}", f"{mem[f'{store}_small']['rss_mb']:.0f}",
                 f"{mem[f'{store}_big']['registry_persons']:,.0f}", f"{mem[f'{store}_big']['rss_mb']:.0f}",
                 f"{mem[f'{store}_big']['ready_s']:.0f}", f"{result['mb_per_million'][store]:.0f}"]
                for store in ("memory", "rocksdb")]
        out += ["", render_table(["store", "persons", "RSS MB ready", "persons", "RSS MB ready", "ready s",
                                  "MB per 1,000,000 persons"], rows, right_from=1)]
        per = result["mb_per_million"]["memory"]
        rule = (f"above {MEMORY_RULE_MB} MB: rocksdb is the default above 1,000,000 registry persons per worker"
                if per > MEMORY_RULE_MB else f"within {MEMORY_RULE_MB} MB: the memory store stays the default; "
                "rocksdb where a worker's share of the registry does not fit its memory (docs/scaling.md)")
        out.append(f"store rule: the memory store takes {per:.0f} MB per 1,000,000 registry persons, {rule}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    global WORK
    parser = argparse.ArgumentParser(description="povwatch monitor: 1, 2, 4 workers; memory per million persons")
    parser.add_argument("--events", type=int, default=60_000, help="rows over every feed (60000)")
    parser.add_argument("--households", type=int, default=5000, help="roster households (5000; at least 200)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, in order (1,2,4)")
    parser.add_argument("--partitions", type=int, default=12, help="partitions per topic (12)")
    parser.add_argument("--persons", type=int, default=1_000_000,
                        help="synthetic registry persons for the memory figures (1000000; 0 skips them)")
    parser.add_argument("--port", type=int, default=19892,
                        help="the bench's broker (19892); the controller and the workers' /metrics take the next")
    parser.add_argument("--work", type=Path, default=WORK, help="the work directory, wiped first (var/bench-workers)")
    args = parser.parse_args(argv)
    WORK = args.work.resolve()
    try:
        counts = [int(x) for x in args.workers.split(",")]
    except ValueError:
        parser.error("--workers: worker counts separated by commas, e.g. 1,2,4")
    if args.events < 1 or args.households < 200 or args.partitions < 1 or args.persons < 0 \
            or not counts or min(counts) < 1:
        parser.error("--events >= 1, --households >= 200, --partitions >= 1, --persons >= 0, workers >= 1")
    try:
        result = bench(args.events, args.households, counts, args.partitions, args.persons, args.port)
    except PovwatchError as exc:
        print(f"workers: error: {exc}", file=sys.stderr)
        return 2
    (WORK / "workers.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    print("\n" + text)
    (WORK / "workers.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
