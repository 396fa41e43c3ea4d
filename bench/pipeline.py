"""Throughput, start-up and memory of the monitor, measured on a real broker and a real monitor process.

    .venv/bin/python bench/pipeline.py [--workload hospitalization|mixed] [--events N] [--households H]
                                       [--extra-persons P] [--port PORT] [--metrics-port PORT] [--profile]
                                       [--store memory|rocksdb] [--workers W] [--partitions P] [--work DIR]

Starts its own Kafka broker (127.0.0.1:PORT, data in `--work` (var/bench), wiped first, stopped at the end), loads
a generated roster of H households (plus P synthetic persons written straight to registry.persons: the registry a
prefecture-sized monitor starts on), runs the connectors with NO monitor running, then starts the monitor on that
backlog. The workload is N hospitalisations about roster persons (distinct events, about one in ten with a high
out-of-pocket amount), or with `mixed` about N rows spread evenly over every department feed of the catalogue,
generated from each feed's declaration (services/demo/feeds.py: every rule of the risk model on, facts kept, a few
bad rows each, rejected). It times, in the same run:

    ready        monitor start -> povwatch_registry_ready = 1 (every registry partition read, state restored; with
                 `--workers`, the first worker's)
    drain        ready -> every stage handled every event (the monitor's /metrics, polled every 2 s; the end is
                 the last stage's last batch, povwatch_monitor_last_batch_timestamp_seconds)
    raw          a bare aiokafka consumer (no group) reading and decoding the N events of every topic written
                 (median of 3 runs), and the whole registry.persons (median of 2): roughly the ceiling of any
                 Python consumer

"ratio to raw" is a stage's events/s over the raw consume-and-decode of the same topic; "x raw" is start-to-ready
over the raw read of registry.persons. The broker, the monitor and this script share the cores: compare ratios
within one run, not absolute numbers between runs. The monitor's RSS (when ready, when drained, peak) and CPU
seconds during the drain are read from /proc. `--profile` samples the monitor with py-spy during the drain
(var/bench/monitor-profile.txt, raw stacks). `--store rocksdb` runs the monitor on its disk store
(POVWATCH_MONITOR_STORE, databases under var/bench/store). `--workers W` runs the monitor as W processes of one
app id (the topics' partitions split between them, as `povwatch monitor` scales out), started together on a broker
that waits 3 s for a new group's members (group.initial.rebalance.delay.ms, Kafka's default; the local broker's is
0, POVWATCH_KAFKA_GROUP_DELAY_MS), so they join in one assignment: ready is the first worker ready (it starts judging
then; a worker that missed the first assignment joins, and the group rebalances, during the drain), the drain ends
with the last batch of any worker, CPU and RSS are the workers' sums. `--partitions P` sets the partitions per topic
(POVWATCH_PARTITIONS, 3). Also written to var/bench/pipeline.json.
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
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from connectors.catalog import EVENT_FEEDS, get_feed
from connectors.readers import read_table
from plumbing import kafka_local
from plumbing.kafka_io import ensure_topics, project_topics, topic_end_offsets, wait_for_topics
from plumbing.kafka_security import client_options
from plumbing.processes import ChildProcess, Samples, metric, scrape
from plumbing.settings import Settings, load_settings
from plumbing.table import render_table
from schemas.codec import default_codec
from schemas.errors import BrokerUnavailable, EnvironmentProblem, PovwatchError
from services.demo.feeds import Household, Member, write_feed_file
from services.demo.population import FEED_HEADERS, generate
from services.demo.run import monitor_settled
from services.ingest import load_roster, run_connector
from services.monitor.app import monitor_topics

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "var" / "bench"
DEPARTMENT, FEED = "medical-security", "hospitalization"
# seconds between two scrapes of /metrics while the monitor drains: the end is the monitor's own timestamp, exact
# whatever the interval, and each scrape holds the monitor's GIL for ~10 ms (a Prometheus scrapes every 15 s)
DRAIN_POLL = 2.0
GROUP_DELAY_MS = 3000  # group.initial.rebalance.delay.ms with --workers: Kafka's default
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
    rng, seen = random.Random(seed), set()
    rows: list[tuple[Any, ...]] = []
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


async def consume_and_decode(bootstrap: str, topic: str | list[str], n: int, timeout: float = 120.0) -> float:
    """Seconds for a group-less consumer to read and decode `n` messages of `topic` (or topics) from the
    beginning."""
    codec = default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    topics = [topic] if isinstance(topic, str) else topic
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()  # so partitions_for_topic() answers
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
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
    return render_table(header, [[str(c) for c in r] for r in rows], right_from=1)


async def publish_synthetic_persons(bootstrap: str, count: int, today: dt.date, seed: int = 11) -> None:
    """`count` extra Person records on registry.persons (random person keys, households outside the roster):
    the registry a prefecture-sized monitor starts on. Not via the roster file: only the monitor is measured."""
    from aiokafka import AIOKafkaProducer

    codec, rng = default_codec(), random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **client_options(), linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(count):
            key = f"{rng.getrandbits(256):064x}"
            record = {"person_key": key, "household_id": f"SYN-{i // 4:07d}",
                      "relation": "户主" if i % 4 == 0 else "子",
                      "sex": "M" if i % 2 else "F", "birth_date": today - dt.timedelta(days=rng.randint(3650, 30000)),
                      "village_code": f"6527011002{i % 100:02d}", "ingested_at": dt.datetime.now(dt.UTC),
                      "source": {"department": "bureau", "feed": "roster", "origin": "bench", "row": i + 2,
                                 "connector_version": "bench"}}
            futures.append(await producer.send("registry.persons", codec.encode("povwatch.registry.Person", record),
                                               key=key.encode()))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process in MB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def merged_metrics(ports: list[int]) -> Samples:
    """The /metrics of a monitor's worker processes as one: counters and gauges added up, except the
    `*_timestamp_seconds` gauges, which take the latest (a worker not answering yet counts nothing)."""
    total: Samples = {}
    for port in ports:
        try:
            samples = scrape(port)
        except (urllib.error.URLError, ConnectionError, OSError):
            continue
        for key, value in samples.items():
            latest = key[0].endswith("_timestamp_seconds")
            total[key] = max(total.get(key, value), value) if latest else total.get(key, 0.0) + value
    return total


def all_ready(ports: list[int]) -> bool:
    """Every worker's registry read and state restored (povwatch_registry_ready = 1 on each)."""
    for port in ports:
        try:
            if metric(scrape(port), "povwatch_registry_ready") != 1:
                return False
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
    return True


def wait_workers(children: list[ChildProcess], what: str, done: Any, timeout: float, interval: float = 0.25) -> None:
    """Poll `done()` until true; EnvironmentProblem if a worker exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive:
                raise EnvironmentProblem(f"a monitor worker exited ({child.proc.returncode}) while waiting for "
                                         f"{what}:\n{child.tail()}")
        if done():
            return
        time.sleep(interval)  # sleep-ok: the polling interval of a wait with a deadline
    raise EnvironmentProblem(f"timed out after {timeout:.0f} s waiting for {what}")


def roster_households(roster: Path, rejected_rows: set[int]) -> list[Household]:
    """The roster file's households (those without a rejected row), as the demo's feed generator takes them."""
    rows = list(read_table(roster).rows)
    bad = {cells[0] for number, cells in rows if number in rejected_rows}
    members: dict[tuple[str, str], list[Member]] = {}
    for _, cells in rows:
        if cells[0] in bad:
            continue
        hid, name, number, sex, relation, village = cells[:6]
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        members.setdefault((hid, village), []).append(Member(name, number, sex == "男", relation, birth))
    return [Household(hid, village, tuple(sorted(ms, key=lambda m: m.relation != "户主")))
            for (hid, village), ms in members.items()]


def write_mixed(directory: Path, households: list[Household], n: int, today: dt.date) -> list[tuple[Any, Path]]:
    """About `n` valid rows spread evenly over every department feed (and a few bad ones each): (spec, file)."""
    specs = list(EVENT_FEEDS.values())
    out = []
    for spec in specs:
        path = directory / f"mixed-{spec.department}-{spec.feed}.csv"
        write_feed_file(spec, households, path, count=max(1, n // len(specs)), seed=f"bench:{spec.feed}",
                        today=today, encoding="utf-8")
        out.append((spec, path))
    return out


async def wait_for_leaders(bootstrap: str, topics: list[str], timeout: float = 300.0) -> None:
    """Return once every partition of `topics` answers its end offset: a new topic's partitions get their
    leaders a moment after it is created, many seconds later on a busy machine with many partitions."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await topic_end_offsets(bootstrap, topics)
            return
        except (KafkaError, PovwatchError) as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"partitions of {len(topics)} topics still without a leader after "
                                        f"{timeout:.0f} s: {exc}") from None
            await asyncio.sleep(0.5)


@dataclass(frozen=True)
class Backlog:
    """What `publish_backlog` left on the broker: the event topics written and their events, the registry."""

    topics: list[str]
    events: int
    persons: int  # roster persons published to registry.persons
    registry_persons: int  # with the synthetic ones
    connector_seconds: float


def publish_backlog(settings: Settings, work: Path, events: int, households: int, extra_persons: int = 0,
                    workload: str = "hospitalization") -> Backlog:
    """On a running broker: the project's topics, a generated roster of `households` loaded (plus `extra_persons`
    synthetic persons), and the workload's events published by the connectors from files under `work/files`.
    EnvironmentProblem unless every row was published."""
    (work / "files").mkdir(parents=True, exist_ok=True)
    asyncio.run(wait_for_leaders(settings.bootstrap, asyncio.run(ensure_topics(settings.bootstrap,
                                                                                settings.partitions))))
    files = generate(work / "files", households=households, seed=2024, today=(today := dt.date.today()))
    roster = asyncio.run(load_roster(settings, files.roster))
    persons = roster.published
    if extra_persons:
        asyncio.run(publish_synthetic_persons(settings.bootstrap, extra_persons, today))
    registry_persons = persons + extra_persons
    print(f"registry: {registry_persons} persons ({persons} from the roster file)")

    rejected = {row for row, _ in roster.rejects}
    if workload == "mixed":
        runs = write_mixed(work / "files", roster_households(files.roster, rejected), events, today)
    else:
        path = work / "files" / "bench-hospitalization.csv"
        write_stays(path, roster_people(files.roster, rejected), events, today)
        runs = [(get_feed(DEPARTMENT, FEED), path)]
    t0 = time.perf_counter()
    summaries = [asyncio.run(run_connector(settings, spec.department, spec.feed, path)) for spec, path in runs]
    t_connector = time.perf_counter() - t0
    if not all(s.balanced for s in summaries) or (workload != "mixed" and summaries[0].published != events):
        raise EnvironmentProblem("the connectors did not publish every row: " + "; ".join(
            f"{s.feed}: {s.published} published, {s.rejected} rejected, {s.duplicates} duplicates"
            for s in summaries))
    published = sum(s.published for s in summaries)
    print(f"connectors published {published} events in {t_connector:.1f} s")
    return Backlog([spec.topic for spec, _ in runs], published, persons, registry_persons, t_connector)


def start_monitor(settings: Settings, log_path: Path, *, store: str = "memory",
                  store_dir: Path | None = None) -> ChildProcess:
    """`povwatch monitor` as a child, on `settings`' broker, app id, partitions and metrics port, with its table store
    (`memory`, or `rocksdb` under `store_dir`)."""
    env = {"POVWATCH_BOOTSTRAP": settings.bootstrap, "POVWATCH_MONITOR_APP_ID": settings.monitor_app_id,
           "POVWATCH_MONITOR_METRICS_PORT": str(settings.monitor_metrics_port), "POVWATCH_MONITOR_STORE": store,
           "POVWATCH_PARTITIONS": str(settings.partitions)}
    if store_dir is not None:
        env["POVWATCH_MONITOR_STORE_DIR"] = str(store_dir)
    # its topics made and led first: the monitor gives a new topic 30 s to appear, too little on a loaded machine
    names = [spec.name for spec in project_topics() + monitor_topics(settings.monitor_app_id)]
    try:
        asyncio.run(ensure_topics(settings.bootstrap, settings.partitions,
                                  project_topics() + monitor_topics(settings.monitor_app_id)))
    except BrokerUnavailable:
        pass  # created, but slow to appear in the metadata: waited for below
    asyncio.run(wait_for_topics(settings.bootstrap, names, timeout=300))
    asyncio.run(wait_for_leaders(settings.bootstrap, names))
    return ChildProcess(["monitor"], env=env, log_path=log_path)


def bench(base: Settings, events: int, households: int, port: int, extra_persons: int,
          profile: bool = False, workload: str = "hospitalization", store: str = "memory",
          metrics_port: int | None = None, workers: int = 1, partitions: int | None = None,
          work: Path = BENCH) -> dict[str, Any]:
    settings = base.model_copy(update={
        "bootstrap": f"127.0.0.1:{port}", "kafka_data": work / "kafka",
        "monitor_app_id": f"povwatch-bench-{uuid.uuid4().hex[:8]}",
        "monitor_metrics_port": metrics_port or free_port(), "partitions": partitions or base.partitions,
        # several workers started together join the group in one assignment, as on a broker with Kafka's default
        # (the local broker forms a group at once: a worker joining a moment later would rebalance the others)
        "kafka_group_delay_ms": GROUP_DELAY_MS if workers > 1 else base.kafka_group_delay_ms})
    print(kafka_local.down(settings))  # a previous bench's broker, if one was left running
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    monitors: list[ChildProcess] = []
    ports = [settings.monitor_metrics_port, *(free_port() for _ in range(workers - 1))]
    try:
        print(kafka_local.up(settings))
        backlog = publish_backlog(settings, work, events, households, extra_persons, workload)
        topics, events, registry_persons = backlog.topics, backlog.events, backlog.registry_persons
        t_connector = backlog.connector_seconds
        print(f"starting the monitor ({workers} worker(s)) on that backlog")

        t_start = time.time()  # wall clock: the monitor's batch timestamps are compared with it
        for i, metrics in enumerate(ports):
            worker = settings.model_copy(update={"monitor_metrics_port": metrics})
            monitors.append(start_monitor(worker, work / f"monitor{'' if i == 0 else f'-{i + 1}'}.log",
                                          store=store, store_dir=work / "store" / str(i)))
        ready_at: dict[int, float] = {}  # a worker starts judging as soon as it is ready, the others or not
        cpu0: list[float | None] = [None] * workers  # each worker's CPU seconds when it became ready

        def every_worker_ready() -> bool:
            for i, metrics in enumerate(ports):
                if metrics not in ready_at and all_ready([metrics]):
                    ready_at[metrics] = time.time() - t_start
                    cpu0[i] = cpu_seconds(monitors[i].proc.pid)
            return len(ready_at) == len(ports)

        wait_workers(monitors, f"the monitor to load {registry_persons} registry persons", every_worker_ready,
                     timeout=600, interval=0.05)
        t_ready, t_all_ready = min(ready_at.values()), max(ready_at.values())
        rss_ready = sum(rss_mb(m.proc.pid)[0] for m in monitors)
        profiler = None
        if profile:  # py-spy samples the (first) worker during the drain (raw stacks, for before/after comparisons)
            profiler = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-p",
                                         str(monitors[0].proc.pid), "-f", "raw", "-r", "250", "-o",
                                         str(work / "monitor-profile.txt")], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        settled = monitor_settled(events)
        final: Samples = {}

        def drained() -> bool:
            nonlocal final
            final = merged_metrics(ports)
            return bool(settled(final))

        wait_workers(monitors, f"the monitor to drain {events} events", drained, timeout=600 + events / 100,
                     interval=DRAIN_POLL)
        # drained when the last stage finished its last batch (the monitor's own timestamp, the latest of the
        # workers): exact whatever the poll interval, and a slow poll leaves the CPU to the monitor (a scrape holds
        # its GIL ~10 ms)
        t_done = max(metric(final, "povwatch_monitor_last_batch_timestamp_seconds", stage=stage)
                     for stage in ("person", "household", "village")) - t_start
        cpu1 = [cpu_seconds(m.proc.pid) for m in monitors]
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        rss_done = [rss_mb(m.proc.pid) for m in monitors]
        print(f"monitor ready after {t_ready:.1f} s" + (f" (every worker after {t_all_ready:.1f} s)" if workers > 1
                                                         else "") + f", drained after {t_done:.1f} s")
        raw_events = [asyncio.run(consume_and_decode(settings.bootstrap, topics, events)) for _ in range(3)]
        raw_persons = [asyncio.run(consume_and_decode(settings.bootstrap, "registry.persons", registry_persons,
                                                      timeout=600)) for _ in range(2)]
    finally:
        for monitor in monitors:
            monitor.stop()
        print(kafka_local.down(settings))

    counters = {w: metric(final, f"povwatch_{w}_total") for w in ("alerts", "events_unmatched", "events_duplicate")}
    by_rule: dict[str, float] = {}
    for (name, labels), value in final.items():
        if name == "povwatch_alerts_total":
            rule = dict(labels)["rule"]
            by_rule[rule] = by_rule.get(rule, 0) + value
    cpu = None if None in cpu0 + cpu1 else sum(cpu1) - sum(cpu0)  # type: ignore[arg-type]
    return {
        "workload": workload, "store": store, "feeds": len(topics), "alerts_by_rule": by_rule,
        "events": events, "households": households, "registry_persons": registry_persons,
        "workers": workers, "partitions": settings.partitions,
        "seconds": {"connector": t_connector, "ready": t_ready, "all_ready": t_all_ready, "drain": t_done - t_ready,
                    "start_to_drained": t_done,
                    "raw_events": statistics.median(raw_events), "raw_persons": statistics.median(raw_persons)},
        "raw_events_runs_s": raw_events, "raw_persons_runs_s": raw_persons,
        "monitor_rss_mb": {"ready": rss_ready, "drained": sum(r[0] for r in rss_done),
                           "peak": sum(r[1] for r in rss_done)},
        "monitor_cpu_s_during_drain": cpu,
        "monitor": counters, "latency": latency(final, cap=t_done),
        "batches": {stage: metric(final, "povwatch_monitor_batch_seconds_count", stage=stage)
                    for stage in ("person", "household", "village")},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "kafka": settings.kafka_version},
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def report(result: dict[str, Any]) -> str:
    n, p, s = result["events"], result["registry_persons"], result["seconds"]
    raw_rate = n / s["raw_events"]
    rows = [
        ["connector (CSV -> Kafka, no monitor)", n, f"{s['connector']:.2f}", f"{n / s['connector']:,.0f}",
         f"{n / s['connector'] / raw_rate:.3f}"],
        ["monitor drain (ready -> all stages done)", n, f"{s['drain']:.2f}",
         *([f"{n / s['drain']:,.0f}", f"{n / s['drain'] / raw_rate:.3f}"] if s["drain"] > 0 else
           ["-", "- (done before its ready was seen: too few events)"])],
        ["monitor start -> drained", n, f"{s['start_to_drained']:.2f}", f"{n / s['start_to_drained']:,.0f}",
         f"{n / s['start_to_drained'] / raw_rate:.3f}"],
        ["raw consume + decode (events)", n, f"{s['raw_events']:.2f}", f"{raw_rate:,.0f}", "1.000"],
    ]
    registry = [
        ["monitor start -> registry ready" + (" (first worker)" if result.get("workers", 1) > 1 else ""), p,
         f"{s['ready']:.2f}", f"{s['ready'] / s['raw_persons']:.2f}"],
        *([["monitor start -> every worker ready", p, f"{s['all_ready']:.2f}",
            f"{s['all_ready'] / s['raw_persons']:.2f}"]] if result.get("workers", 1) > 1 else []),
        ["raw consume + decode (registry.persons)", p, f"{s['raw_persons']:.2f}", "1.00"],
    ]
    mon, m, lat, rss = result["monitor"], result["machine"], result["latency"], result["monitor_rss_mb"]
    cpu = result["monitor_cpu_s_during_drain"]
    return "\n".join([
        table(rows, ["stage", "events", "seconds", "events/s", "ratio to raw"]),
        "",
        table(registry, ["registry", "persons", "seconds", "x raw"]),
        "",
        f"monitor RSS: {rss['ready']:.0f} MB when ready, {rss['drained']:.0f} MB drained, peak {rss['peak']:.0f} MB"
        + (f"; CPU {cpu:.1f} s during the drain" if cpu is not None else ""),
        f"monitor: {mon['alerts']:.0f} alerts ({len(result['alerts_by_rule'])} rules), "
        f"{mon['events_unmatched']:.0f} unmatched, {mon['events_duplicate']:.0f} duplicates; batches "
        + ", ".join(f"{stage} {count:.0f}" for stage, count in result.get("batches", {}).items()),
        f"workload: {result['workload']} ({result['feeds']} feeds), store: {result.get('store', 'memory')}, "
        f"{result.get('workers', 1)} worker(s) on {result.get('partitions', 3)} partitions per topic"
        + (" (RSS and CPU: the workers' sums)" if result.get("workers", 1) > 1 else ""),
        f"latency ingested_at -> rules done ({lat['count']} events; a backlog, so mostly waiting): "
        f"mean {lat['mean_s']:.2f} s",
        f"machine: {m['cores']} cores, Python {m['python']}, Kafka {m['kafka']} "
        f"({result['households']} roster households, {p} registry persons)",
        "one run on a noisy machine; compare ratios, not absolute numbers",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="povwatch monitor: drain of a backlog, start-up, memory")
    parser.add_argument("--workload", choices=("hospitalization", "mixed"), default="hospitalization",
                        help="hospitalisations only, or rows of every department feed (mixed)")
    parser.add_argument("--events", type=int, default=20000, help="rows to publish (20000)")
    parser.add_argument("--households", type=int, default=2000, help="roster households (2000; at least 200)")
    parser.add_argument("--port", type=int, default=19392, help="port of the bench's own broker (19392)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="the monitor's metrics port (a free one if not given)")
    parser.add_argument("--extra-persons", type=int, default=0,
                        help="synthetic persons added to registry.persons besides the roster (e.g. 1000000)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the monitor with py-spy during the drain (var/bench/monitor-profile.txt)")
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory",
                        help="the monitor's table and state store (memory)")
    parser.add_argument("--work", type=Path, default=BENCH, help="work directory, wiped first (var/bench)")
    parser.add_argument("--workers", type=int, default=1, help="monitor worker processes of one app id (1)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions per topic (POVWATCH_PARTITIONS, 3)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.households < 200:
        parser.error("--events must be >= 1 and --households >= 200")
    if args.workers < 1 or (args.partitions is not None and args.partitions < 1):
        parser.error("--workers and --partitions must be >= 1")
    try:
        result = bench(load_settings(), args.events, args.households, args.port, args.extra_persons,
                       args.profile, args.workload, args.store, args.metrics_port, args.workers, args.partitions,
                       args.work.resolve())
    except PovwatchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    print("\n" + report(result))
    (args.work / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.work / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
