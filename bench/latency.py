"""Latency of the whole path, connector -> monitor -> alert -> case DB, at 10 %, 50 % and 90 % of its maximum
rate measured in the same run, beside Kafka's own end-to-end latency on the same broker at the same rates.

    .venv/bin/python bench/latency.py [--seconds S] [--min-events N] [--burst B] [--households H]
                                      [--fractions 0.1,0.5,0.9] [--case-db POSTGRESQL_URL] [--port PORT]

Starts its own Kafka broker (127.0.0.1:PORT, data in var/bench-latency, wiped first, stopped at the end; its
controller on PORT+1), loads a generated roster of H households, and starts `povwatch monitor` (/metrics on
PORT+2) and `povwatch casefeed` (/metrics on PORT+3, an SQLite case DB under var/bench-latency) as child
processes (`--case-db`: a PostgreSQL case DB instead, in a schema of the run's own, dropped at the end). Every
row offered is a 临时救助 发放 (temporary assistance paid) about a roster person: SAFETY_NET
raises one MEDIUM alert per such event, and the case feed attaches each alert to its household's case, so every
event has exactly one alert and one evidence row. Rows go through `povwatch connector run`'s own code
(services.ingest.run_connector: validation, pseudonymisation, Avro, the idempotent producer), one file per phase:

    warm-up      a few events, not measured (every consumer group joined, every code path warm)
    burst        B events offered as fast as the connector sends them: the maximum rate is the burst's events over
                 the time from its first ingest to its last case (the whole path's throughput)
    paced        for each fraction f: max(N, f x maximum x S) events, the connector's sends paced to f x maximum a
                 second; beside them, at the same time, a plain aiokafka producer -> consumer probe on the same
                 broker at the same rate, as many messages (acks=all): Kafka's own end-to-end latency on the
                 machine as loaded as the pipeline is

Each phase waits until the case feed has written every alert before the next starts. Times, in milliseconds:

    ingest       the event record's timestamp on its topic (the connector's producer, at send)
    alert        the SAFETY_NET alert record's timestamp on alerts.household (the monitor's producer, at send)
    case         evidence.received_at in the case DB: the case feed's clock when it began the transaction
                 writing the alert (the commit follows within that transaction's time)
    Kafka        probe consumer's clock when a poll returned the message - the record's timestamp

Figures: p50/p95/p99 (nearest rank) of ingest->alert, alert->case and Kafka's, per phase, and the ratio of the
two p99s. Exit 1 when an offered event did not reach exactly one alert and one case. Written to
var/bench-latency/latency.json too.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import math
import os
import platform
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from connectors.catalog import get_feed
from connectors.framework import Summary
from plumbing import kafka_local
from plumbing.kafka_io import KafkaPublisher, ensure_topics, read_since
from plumbing.processes import ChildProcess, metric, wait_until
from plumbing.settings import Settings, load_settings
from schemas.codec import default_codec
from schemas.errors import BrokerUnavailable, EnvironmentProblem, PovwatchError
from schemas.topics import ALERTS_HOUSEHOLD, TopicSpec
from services.casedb.engine import make_engine, resolve_url
from services.casedb.models import Evidence
from services.demo.population import generate
from services.ingest import load_roster, run_connector
from services.monitor.topics import MonitorTopics

from latency_stats import join, percentiles, report  # bench/, beside this script  # isort: skip
from pipeline import roster_people, start_monitor  # isort: skip

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "bench-latency"
DEPARTMENT, FEED = "civil-affairs", "assistance"
PROBE_TOPIC = "bench.latency-probe"
PROBE_BYTES = 300  # about an assistance event's Avro record


def write_assistance(path: Path, people: list[tuple[str, str]], first: int, count: int, today: dt.date) -> None:
    """`count` rows of 临时救助 发放, numbered from `first` (the number makes the amount, so every row of a run is a
    distinct event), about `people` in turn."""
    spec = get_feed(DEPARTMENT, FEED)
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow([c.label for c in spec.columns])
        for seq in range(first, first + count):
            name, number = people[seq % len(people)]
            values = {"name": name, "id_number": number, "assistance_type": "临时救助", "change_type": "发放",
                      "amount": f"{500 + seq // 100}.{seq % 100:02d}",
                      "start_date": (today - dt.timedelta(days=10 + seq % 300)).isoformat(), "end_date": ""}
            out.writerow([values[c.field] for c in spec.columns])


class Paced:
    """The connector's publisher, its sends spread evenly at `rate` a second from the first (an absolute schedule:
    a send that is late is not waited for, the next ones catch up)."""

    def __init__(self, inner: KafkaPublisher, rate: float) -> None:
        self._inner, self._rate = inner, rate
        self._start: float | None = None
        self._sent = 0

    async def __aenter__(self) -> Paced:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        now = asyncio.get_running_loop().time()
        if self._start is None:
            self._start = now
        due = self._start + self._sent / self._rate
        if due > now:
            await asyncio.sleep(due - now)
        self._sent += 1
        await self._inner.send(topic, key, value)

    async def flush(self) -> None:
        await self._inner.flush()


def offer(settings: Settings, path: Path, rate: float | None) -> Summary:
    """One file through `povwatch connector run`'s code, its sends paced to `rate` a second (None: unpaced)."""
    wrap = None if rate is None else (lambda publisher: Paced(publisher, rate))
    return asyncio.run(run_connector(settings, DEPARTMENT, FEED, path, wrap_publisher=wrap))


async def kafka_probe(bootstrap: str, rate: float, count: int) -> list[float]:
    """Kafka's own end-to-end latency: `count` messages (distinct keys, PROBE_BYTES each) sent at `rate` a second
    by a plain producer (acks=all), read by a group-less consumer on every partition; ms from each record's
    timestamp to the poll that returned it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    latencies: list[float] = []
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()  # so partitions_for_topic() answers (as bench/pipeline.py)
        tps = [TopicPartition(PROBE_TOPIC, p) for p in sorted(consumer.partitions_for_topic(PROBE_TOPIC) or ())]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # positions settled before the first message is sent
        await producer.start()
        payload = os.urandom(PROBE_BYTES)

        async def produce() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(count):
                due = start + i / rate
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                await producer.send(PROBE_TOPIC, payload, key=f"probe-{i}".encode())
            await producer.flush()

        sending = asyncio.create_task(produce())
        deadline = time.monotonic() + 60 + count / rate
        while len(latencies) < count:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"the Kafka probe read {len(latencies)} of {count} messages")
            batch = await consumer.getmany(timeout_ms=200)
            now_ms = time.time() * 1000
            latencies += [now_ms - m.timestamp for messages in batch.values() for m in messages]
        await sending
        return latencies
    except KafkaError as exc:
        raise BrokerUnavailable(f"Kafka probe on {bootstrap}: {exc or type(exc).__name__}") from None
    finally:
        await producer.stop()
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka quirk on stop without a group (kafka_io._stop)
            await consumer.stop()


def start_casefeed(settings: Settings, log_path: Path) -> ChildProcess:
    """`povwatch casefeed` as a child, on `settings`' broker, case DB, group and metrics port."""
    return ChildProcess(["casefeed"], log_path=log_path, env={
        "POVWATCH_BOOTSTRAP": settings.bootstrap, "POVWATCH_CASE_DB": settings.case_db,
        "POVWATCH_CASEFEED_GROUP": settings.casefeed_group,
        "POVWATCH_CASEFEED_METRICS_PORT": str(settings.casefeed_metrics_port)})


def wait_cases(settings: Settings, casefeed: ChildProcess, total: int, what: str) -> None:
    """Until the case feed has written `total` alerts as evidence since it started."""
    wait_until(settings.casefeed_metrics_port,
               lambda s: metric(s, "povwatch_cases_evidence_written_total") >= total,
               timeout=120 + total / 20, child=casefeed, what=f"the case feed to write {what}", interval=0.1)


async def _read_topics(settings: Settings) -> tuple[list[tuple[str, str, float]], list[tuple[list[str], float]],
                                                    list[tuple[str, float]]]:
    """(event id, phase, ingest ms) of every offered event, (event ids, ms) of every SAFETY_NET alert and (event
    id, ms) of every event the person stage forwarded to the household stage."""
    bootstrap, codec = settings.bootstrap, default_codec()
    events, alerts, forwards = [], [], []
    async for rec in read_since(bootstrap, [get_feed(DEPARTMENT, FEED).topic], {}):
        event = codec.decode(rec.value).record
        events.append((str(event["event_id"]), Path(event["source"]["origin"]).stem, float(rec.timestamp_ms)))
    async for rec in read_since(bootstrap, [ALERTS_HOUSEHOLD], {}):
        alert = codec.decode(rec.value).record
        if alert["rule"] == "SAFETY_NET":
            alerts.append(([str(e) for e in alert["event_ids"]], float(rec.timestamp_ms)))
    async for rec in read_since(bootstrap, [MonitorTopics(settings.monitor_app_id).household_events], {}):
        joined = codec.decode(rec.value).record  # a HouseholdEvent: the event's own message inside
        forwards.append((str(codec.decode(joined["event"]).record["event_id"]), float(rec.timestamp_ms)))
    return events, alerts, forwards


def read_back(settings: Settings) -> Any:
    """Every event, alert and case-DB evidence row so far, joined (latency_stats.join)."""
    events, alerts, forwards = asyncio.run(_read_topics(settings))
    engine = make_engine(resolve_url(settings.case_db))
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Evidence.event_ids, Evidence.received_at)).all()
    finally:
        engine.dispose()
    cases = [([str(e) for e in event_ids], received.timestamp() * 1000) for event_ids, received in rows]
    return join(events, alerts, cases, forwards)


def case_db_schema(url: str, schema: str, *, drop: bool = False) -> str:
    """A PostgreSQL case DB: create (or drop) `schema` in the database of `url`; returns the URL whose connections
    work in it (search_path), so each run starts from an empty case DB beside whatever the database holds."""
    engine = make_engine(resolve_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE' if drop
                                    else f'CREATE SCHEMA "{schema}"'))
    except SQLAlchemyError as exc:
        raise EnvironmentProblem(f"case DB {resolve_url(url).render_as_string(hide_password=True)}: "
                                 f"{str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def bench(base: Settings, *, port: int, households: int, warmup: int, burst: int, seconds: float,
          min_events: int, fractions: list[float], case_db: str | None = None) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    schema = f"bench_latency_{run}"
    settings = base.model_copy(update={
        "bootstrap": f"127.0.0.1:{port}", "kafka_data": WORK / "kafka",
        "case_db": case_db_schema(case_db, schema) if case_db else f"sqlite:///{WORK / 'cases.db'}",
        "monitor_app_id": f"povwatch-bench-latency-monitor-{run}",
        "casefeed_group": f"povwatch-bench-latency-casefeed-{run}",
        "monitor_metrics_port": port + 2, "casefeed_metrics_port": port + 3})
    print(kafka_local.down(settings))  # a previous run's broker, if one was left running
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "files").mkdir(parents=True)
    children: list[ChildProcess] = []
    today = dt.date.today()
    summaries: dict[str, Summary] = {}
    probes: dict[str, list[float]] = {}  # phase -> Kafka's own latencies (ms), measured beside it
    seq = 0

    def run_phase(name: str, count: int, rate: float | None) -> None:
        """Offer `count` rows (at `rate` a second, and then Kafka's probe beside them at the same rate, in a
        thread of its own; None: unpaced, no probe) and wait until every alert so far is in the case DB."""
        nonlocal seq
        path = WORK / "files" / f"{name}.csv"
        write_assistance(path, people, seq, count, today)
        seq += count
        with ThreadPoolExecutor(1) as beside:
            probe = None if rate is None else beside.submit(asyncio.run, kafka_probe(settings.bootstrap, rate, count))
            summary = summaries[name] = offer(settings, path, rate)
            if summary.published != count:
                raise EnvironmentProblem(f"{name}: the connector published {summary.published} of {count} rows "
                                         f"({summary.rejected} rejected, {summary.duplicates} duplicates)")
            wait_cases(settings, casefeed, seq, f"the {seq} alerts of the phases up to {name}")
            if probe is not None:
                probes[name] = probe.result()

    try:
        print(kafka_local.up(settings))
        asyncio.run(ensure_topics(settings.bootstrap, settings.partitions))
        asyncio.run(ensure_topics(settings.bootstrap, settings.partitions, [TopicSpec(PROBE_TOPIC)]))
        files = generate(WORK / "files", households=households, seed=2024, today=today)
        roster = asyncio.run(load_roster(settings, files.roster))
        people = roster_people(files.roster, {row for row, _ in roster.rejects})
        print(f"roster: {roster.published} persons published; starting the monitor and the case feed")
        monitor = start_monitor(settings, WORK / "monitor.log")
        children.append(monitor)
        casefeed = start_casefeed(settings, WORK / "casefeed.log")
        children.append(casefeed)
        wait_until(settings.monitor_metrics_port, lambda s: metric(s, "povwatch_registry_ready") == 1,
                   timeout=300, child=monitor, what="the monitor to load the registry")
        run_phase("warmup", warmup, None)
        print(f"warm-up: {warmup} events reached the case DB; burst of {burst}")
        run_phase("burst", burst, None)
        burst_phase = read_back(settings).phases["burst"]
        max_rate = burst_phase.rate_to("case")
        if not max_rate > 0:
            raise EnvironmentProblem("the burst reached no case: no maximum rate")
        print(f"maximum rate: {max_rate:,.0f} events/s")
        plan: dict[str, tuple[float, float]] = {}
        for fraction in fractions:
            name, rate = f"at-{round(fraction * 100)}", fraction * max_rate
            count = max(min_events, math.ceil(rate * seconds))
            plan[name] = (fraction, rate)
            print(f"{name}: {count} events at {rate:,.0f}/s", flush=True)
            run_phase(name, count, rate)
        joined = read_back(settings)
    finally:
        for child in reversed(children):
            child.stop()
        print(kafka_local.down(settings))
        if case_db:
            case_db_schema(case_db, schema, drop=True)

    problems = []
    if joined.unknown_alerts or joined.unknown_cases:
        problems.append(f"{joined.unknown_alerts} alerts and {joined.unknown_cases} case rows about no offered event")
    phases = []
    for name, summary in summaries.items():
        phase = joined.phases.get(name)
        events, alerts, cases = (0, 0, 0) if phase is None else (phase.events, len(phase.alert), len(phase.case))
        if not events == alerts == cases == summary.published or (phase and phase.repeated_alerts):
            problems.append(f"{name}: {summary.published} published, {events} events read back, {alerts} alerts "
                            f"({phase.repeated_alerts if phase else 0} repeated), {cases} cases")
        if phase is None or name not in plan:
            continue
        fraction, rate = plan[name]
        phases.append({"phase": name, "fraction": fraction, "target_rate": rate, "offered_rate": phase.offered_rate(),
                       "events": events, "alerts": alerts, "cases": cases,
                       "ingest_to_alert": percentiles(phase.ingest_to_alert()),
                       "ingest_to_forward": percentiles(phase.ingest_to_forward()),
                       "forward_to_alert": percentiles(phase.forward_to_alert()),
                       "alert_to_case": percentiles(phase.alert_to_case()), "kafka": percentiles(probes[name])})
    return {
        "households": households, "case_db_kind": "PostgreSQL" if case_db else "SQLite", "max_rate": max_rate,
        "burst": {"events": burst_phase.events, "published_per_s": burst_phase.offered_rate(),
                  "alerts_per_s": burst_phase.rate_to("alert"), "cases_per_s": max_rate,
                  "ingest_to_alert": percentiles(burst_phase.ingest_to_alert()),
                  "alert_to_case": percentiles(burst_phase.alert_to_case())},
        "phases": phases, "problems": problems, "settings": {"seconds": seconds, "min_events": min_events,
                                                             "warmup": warmup},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "kafka": settings.kafka_version},
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _fractions(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of fractions: {text!r} (e.g. 0.1,0.5,0.9)") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1]: {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="povwatch latency: connector -> monitor -> alert -> case DB")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each paced phase (20 s)")
    parser.add_argument("--min-events", type=int, default=1000,
                        help="at least this many events in each paced phase (1000: a stable p99)")
    parser.add_argument("--burst", type=int, default=5000, help="events of the saturating burst (5000)")
    parser.add_argument("--warmup", type=int, default=100, help="events before the burst, not measured (100)")
    parser.add_argument("--households", type=int, default=1000, help="roster households (1000; at least 200)")
    parser.add_argument("--fractions", type=_fractions, default=[0.1, 0.5, 0.9],
                        help="paced rates as fractions of the maximum (0.1,0.5,0.9)")
    parser.add_argument("--case-db", metavar="URL",
                        help="a PostgreSQL case DB (postgresql+psycopg://...) instead of SQLite under "
                             "var/bench-latency: the run works in a schema of its own, dropped at the end")
    parser.add_argument("--port", type=int, default=19692,
                        help="the bench's own broker (19692); its controller, the monitor's and the case feed's "
                             "/metrics take the next three ports")
    args = parser.parse_args(argv)
    if args.case_db and not args.case_db.startswith("postgresql"):
        parser.error("--case-db takes a PostgreSQL URL (the default case DB is SQLite under var/bench-latency)")
    if args.seconds <= 0 or args.min_events < 1 or args.burst < 10 or args.warmup < 1 or args.households < 200:
        parser.error("--seconds must be > 0, --min-events and --warmup >= 1, --burst >= 10, --households >= 200")
    try:
        result = bench(load_settings(), port=args.port, households=args.households, warmup=args.warmup,
                       burst=args.burst, seconds=args.seconds, min_events=args.min_events, fractions=args.fractions,
                       case_db=args.case_db)
    except PovwatchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    print("\n" + report(result))
    (WORK / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {WORK / 'latency.json'}")
    for problem in result["problems"]:
        print(f"bench: error: {problem}", file=sys.stderr)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
