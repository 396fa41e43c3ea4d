"""A first throughput number for povwatch, measured on a real broker and a real monitor process.

    .venv/bin/python bench/pipeline.py [--events N] [--households H] [--port P]

Starts its own Kafka broker (127.0.0.1:P, data in var/bench, wiped first, stopped at the end), loads a generated
roster of H households, starts the monitor as a child process and waits until it holds the whole roster. Then it
writes a hospitalisation CSV of N rows about random roster persons (distinct events, about one in ten with a high
out-of-pocket amount, so rules fire and alerts are written) and times, in the same run:

    connector    run_connector on the file: read, validate, pseudonymise, encode, publish (acks=all)
    end to end   from the start of the connector until the monitor's /metrics say the person and household
                 stages handled every event (the connector and the monitor overlap: this is the pipeline rate)
    raw          afterwards, a bare aiokafka consumer (no group) reading the N events from the beginning and
                 decoding them (median of 3 runs): roughly the ceiling of any Python consumer of this topic

How to read it: "ratio" is the stage's events/s over raw consume+decode's, i.e. how close a stage gets to just
reading the data; the broker, the monitor and this script share the cores, so compare ratios between runs, not
absolute numbers. "CPU seconds" says who used the cores during the end-to-end stage: a process far below its wall
time is waiting (on the broker, acks, timers), not computing. The monitor's latency (connector's ingested_at ->
end of rule evaluation) is given as mean and approximate p95; the connector publishes a burst much faster than
the monitor drains it, so it is mostly queueing, not per-event cost. Also written to var/bench/pipeline.json.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from connectors.catalog import get_feed
from connectors.readers import read_table
from schemas.codec import default_codec
from schemas.errors import BrokerUnavailable, EnvironmentProblem, PovwatchError
from services import kafka_local
from services.demo.population import FEED_HEADERS, generate
from services.demo.run import monitor_settled
from services.ingest import load_roster, run_connector
from services.kafka_io import ensure_topics
from services.processes import ChildProcess, Samples, metric, wait_until
from services.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "var" / "bench"
DEPARTMENT, FEED = "medical-security", "hospitalization"
DISEASES = ["脑梗死", "肺炎", "冠心病", "股骨骨折", "2型糖尿病", "胆囊炎", "阑尾炎"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def roster_people(roster: Path, rejected_rows: set[int]) -> list[tuple[str, str]]:
    """(name, ID number) of every roster person whose household has no rejected row (all of them are known)."""
    rows = list(read_table(roster).rows)
    bad = {cells[0] for number, cells in rows if number in rejected_rows}
    return [(cells[1], cells[2]) for _, cells in rows if cells[0] not in bad]


def write_stays(path: Path, people: list[tuple[str, str]], n: int, today: dt.date, seed: int = 7) -> None:
    """N distinct hospitalisation rows (distinct content, so distinct event_ids)."""
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n:
        name, id_number = rng.choice(people)
        admitted = today - dt.timedelta(days=rng.randint(20, 540))
        days, high = rng.randint(2, 30), rng.random() < 0.1
        oop = rng.randint(10_000, 40_000) if high else rng.randint(200, 3_000)
        total = oop * 100 // rng.randint(30, 75)
        settled = min(admitted + dt.timedelta(days=days + rng.randint(0, 5)), today)
        row = (name, id_number, rng.choice(DISEASES), admitted.isoformat(), days, f"{total}.00", f"{oop}.00",
               settled.isoformat())
        if row[1:] not in seen:
            seen.add(row[1:])
            rows.append(row)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([FEED_HEADERS[FEED], *rows])


async def consume_and_decode(bootstrap: str, topic: str, n: int, timeout: float = 120.0) -> float:
    """Seconds for a group-less consumer to read and decode `n` messages of `topic` from the beginning."""
    codec = default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()  # so partitions_for_topic() answers
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        start = time.perf_counter()
        await consumer.seek_to_beginning(*tps)
        count = 0
        while count < n:
            if time.perf_counter() - start > timeout:
                raise BrokerUnavailable(f"raw consumer read only {count} of {n} events in {timeout:.0f} s")
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for m in messages:
                    codec.decode(m.value or b"")
                count += len(messages)
        return time.perf_counter() - start
    except KafkaError as exc:
        raise BrokerUnavailable(f"raw consumer on {bootstrap}: {exc or type(exc).__name__}") from None
    finally:
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka quirk on stop without a group (kafka_io._stop)
            await consumer.stop()


def cpu_seconds(pid: int | str) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc); None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def latency(samples: Samples, cap: float) -> dict[str, Any]:
    """Count, mean and approximate p95 of povwatch_event_latency_seconds: linear inside the bucket holding the
    95th percentile (as histogram_quantile does), capped at `cap` (no event of this run can have waited longer)."""
    name = "povwatch_event_latency_seconds"
    count = metric(samples, f"{name}_count") or 1e-9
    buckets = sorted((float(dict(lbl)["le"]), v) for (n, lbl), v in samples.items() if n == f"{name}_bucket")
    lower, below, upper = 0.0, 0.0, float("inf")
    for upper, cumulative in buckets:
        if cumulative >= 0.95 * count:
            break
        lower, below = upper, cumulative
    p95 = cap if upper == float("inf") else lower + (upper - lower) * (0.95 * count - below) / (cumulative - below)
    return {"count": int(count), "mean_s": metric(samples, f"{name}_sum") / count, "p95_s": min(p95, cap),
            "p95_bucket_s": [lower, upper], "p95_capped": p95 >= cap}


def table(rows: list[list[Any]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[Any]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def bench(base: Settings, events: int, households: int, port: int) -> dict[str, Any]:
    settings = base.model_copy(update={
        "bootstrap": f"127.0.0.1:{port}", "kafka_data": BENCH / "kafka", "monitor_data": BENCH / "monitor",
        "monitor_app_id": f"povwatch-bench-{uuid.uuid4().hex[:8]}", "monitor_metrics_port": free_port()})
    print(kafka_local.down(settings))  # a previous bench's broker, if one was left running
    shutil.rmtree(BENCH, ignore_errors=True)
    (BENCH / "files").mkdir(parents=True)
    monitor: ChildProcess | None = None
    try:
        print(kafka_local.up(settings))
        asyncio.run(ensure_topics(settings.bootstrap, settings.partitions))
        files = generate(BENCH / "files", households=households, seed=2024, today=(today := dt.date.today()))
        roster = asyncio.run(load_roster(settings, files.roster))
        persons, hh_count = roster.published, roster.extra_messages
        print(f"roster: {persons} persons, {hh_count} households published")
        env = {"POVWATCH_BOOTSTRAP": settings.bootstrap, "POVWATCH_MONITOR_APP_ID": settings.monitor_app_id,
               "POVWATCH_MONITOR_DATA": str(settings.monitor_data),
               "POVWATCH_MONITOR_METRICS_PORT": str(settings.monitor_metrics_port)}
        monitor = ChildProcess(["monitor"], env=env, log_path=BENCH / "monitor.log")
        started = time.perf_counter()
        wait_until(settings.monitor_metrics_port, lambda s: (
            metric(s, "povwatch_registry_entries", table="persons") == persons
            and metric(s, "povwatch_registry_entries", table="households") == hh_count),
            timeout=180, child=monitor, what=f"the monitor to load {persons} roster persons")
        print(f"monitor up with the roster after {time.perf_counter() - started:.1f} s")

        path = BENCH / "files" / "bench-hospitalization.csv"
        write_stays(path, roster_people(files.roster, {row for row, _ in roster.rejects}), events, today)
        broker_pid = (settings.kafka_data / "broker.pid").read_text().strip()
        cpu0 = (time.process_time(), cpu_seconds(monitor.proc.pid), cpu_seconds(broker_pid))
        t0 = time.perf_counter()
        summary = asyncio.run(run_connector(settings, DEPARTMENT, FEED, path))
        t_connector = time.perf_counter() - t0
        if summary.published != events:
            raise EnvironmentProblem(f"the connector published {summary.published} of {events} rows "
                                     f"({summary.rejected} rejected, {summary.duplicates} duplicates)")
        final = wait_until(settings.monitor_metrics_port, monitor_settled(events), timeout=120 + events / 20,
                           child=monitor, what=f"the monitor to handle {events} events")
        t_e2e = time.perf_counter() - t0
        cpu1 = (time.process_time(), cpu_seconds(monitor.proc.pid), cpu_seconds(broker_pid))
        print(f"connector done after {t_connector:.1f} s, monitor settled after {t_e2e:.1f} s")
        raw_runs = [asyncio.run(consume_and_decode(settings.bootstrap, get_feed(DEPARTMENT, FEED).topic, events))
                    for _ in range(3)]
    finally:
        if monitor is not None:
            monitor.stop()
        print(kafka_local.down(settings))

    cpu = {who: b - a for who, a, b in zip(("connector", "monitor", "broker"), cpu0, cpu1) if None not in (a, b)}
    counters = {w: metric(final, f"povwatch_{w}_total") for w in ("alerts", "events_unmatched", "events_duplicate")}
    return {
        "events": events, "households": households, "roster_persons": persons,
        "stages": {"connector": t_connector, "end_to_end": t_e2e, "raw_consume_decode": statistics.median(raw_runs)},
        "raw_runs_s": raw_runs, "monitor": counters, "latency": latency(final, cap=t_e2e),
        "cpu_seconds_during_end_to_end": cpu,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "kafka": settings.kafka_version},
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def report(result: dict[str, Any]) -> str:
    n, stages = result["events"], result["stages"]
    raw_rate = n / stages["raw_consume_decode"]
    names = ["connector (CSV -> Kafka)", "end to end (CSV -> monitor done)", "raw consume + decode"]
    rows = [[name, n, f"{s:.2f}", f"{n / s:,.0f}", f"{n / s / raw_rate:.3f}"]
            for name, s in zip(names, stages.values())]
    mon, m, lat = result["monitor"], result["machine"], result["latency"]
    cpu = ", ".join(f"{who} {s:.1f}" for who, s in result["cpu_seconds_during_end_to_end"].items()) or "unknown"
    return "\n".join([
        table(rows, ["stage", "events", "seconds", "events/s", "ratio to raw"]),
        "",
        f"monitor: {mon['alerts']:.0f} alerts, {mon['events_unmatched']:.0f} unmatched, "
        f"{mon['events_duplicate']:.0f} duplicates",
        f"latency ingested_at -> rules done ({lat['count']} events): mean {lat['mean_s']:.2f} s, "
        f"p95 ~{lat['p95_s']:.2f} s (in the {lat['p95_bucket_s'][0]:g}-{lat['p95_bucket_s'][1]:g} s bucket"
        + ("; capped at the end-to-end time)" if lat["p95_capped"] else ")"),
        f"CPU seconds during end to end ({stages['end_to_end']:.1f} s wall x {m['cores']} cores): {cpu}",
        f"machine: {m['cores']} cores, Python {m['python']}, Kafka {m['kafka']} "
        f"({result['households']} households, {result['roster_persons']} roster persons)",
        "one run on a noisy machine; compare ratios, not absolute numbers",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="povwatch pipeline throughput (connector, end to end, raw)")
    parser.add_argument("--events", type=int, default=20000, help="hospitalisation rows to publish (20000)")
    parser.add_argument("--households", type=int, default=2000, help="roster households (2000; at least 200)")
    parser.add_argument("--port", type=int, default=19392, help="port of the bench's own broker (19392)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.households < 200:
        parser.error("--events must be >= 1 and --households >= 200")
    try:
        result = bench(load_settings(), args.events, args.households, args.port)
    except PovwatchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    print("\n" + report(result))
    (BENCH / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {BENCH / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
