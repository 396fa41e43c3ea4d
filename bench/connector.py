"""Throughput and memory of a connector on a big file: rows/s from a CSV to events acknowledged by the broker,
beside reading and parsing the same file alone, in one run, each stage in a fresh process with its peak RSS.

    .venv/bin/python bench/connector.py [--rows N] [--port PORT | --bootstrap HOST:PORT]

Writes a CSV of N hospitalisation rows (distinct, valid, UTF-8; ~100 bytes a row) under var/bench-connector,
starts its own Kafka broker on 127.0.0.1:PORT (data wiped first, stopped at the end) unless `--bootstrap` names
a running one, and times three stages on that file, each in a child process (so its peak RSS is its own):

    read + parse        the reader and every field parser and check (connectors.framework.validate): the floor
    + events, no broker the same, plus pseudonymisation, event ids, Avro encoding (a publisher that drops them)
    connector -> Kafka  `povwatch connector run`'s path: every event sent and acknowledged (acks=all, idempotent)

"ratio" is a stage's rows/s over read + parse. One run on a noisy machine: compare ratios, not absolute numbers.
Also written to var/bench-connector/connector.json.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages
    sys.path.insert(0, str(ROOT))

from connectors.catalog import get_feed  # noqa: E402
from connectors.framework import EventHandler, RawRow, ValidRecord, bind_headers, validate  # noqa: E402
from connectors.idcard import check_character  # noqa: E402
from connectors.pseudonym import pseudonymiser_of  # noqa: E402
from connectors.readers import read_table  # noqa: E402
from plumbing.table import render_table  # noqa: E402
from schemas.codec import default_codec  # noqa: E402
from schemas.errors import PovwatchError  # noqa: E402

WORK = ROOT / "var" / "bench-connector"
DEPARTMENT, FEED = "medical-security", "hospitalization"
STAGES = ("read", "events", "kafka")
LABELS = {"read": "read + parse (no events)", "events": "+ events, no broker", "kafka": "connector -> Kafka (acked)"}
DISEASES = ["脑梗死", "肺炎", "冠心病", "股骨骨折", "2型糖尿病", "胆囊炎", "阑尾炎"]


def write_file(path: Path, rows: int, today: dt.date, seed: int = 5) -> None:
    """`rows` distinct valid hospitalisation rows about 50,000 generated people."""
    rng = random.Random(seed)
    people = []
    for i in range(50_000):
        born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randint(0, 25_000))
        first17 = f"65270{rng.randint(1, 3)}{born:%Y%m%d}{i % 1000:03d}"
        people.append((f"居民{i}", first17 + check_character(first17)))
    spec = get_feed(DEPARTMENT, FEED)
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow([c.label for c in spec.columns])
        for n in range(rows):
            name, number = people[n % len(people)]
            admitted = today - dt.timedelta(days=20 + n % 700)
            # the amount's yuan and fen come from n: no two rows are the same (no duplicates in the count)
            days, oop = 2 + n % 28, f"{200 + n % 30_000}.{n // 30_000 % 100:02d}"
            settled = (admitted + dt.timedelta(days=days)).isoformat()
            out.writerow([name, number, DISEASES[n % len(DISEASES)], admitted.isoformat(), days,
                          f"{60_000 + rng.randint(0, 30_000)}.00", oop, settled])


class _DropPublisher:
    """A publisher that takes every message and keeps none: the cost of making events, without a broker."""

    sent = 0

    async def __aenter__(self) -> _DropPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent += 1

    async def flush(self) -> None:
        return None


def _read_and_parse(path: Path) -> dict[str, int]:
    spec = get_feed(DEPARTMENT, FEED)
    table = read_table(path)
    bound = bind_headers(spec, table.headers)
    today, counts = dt.date.today(), {"read": 0, "valid": 0}
    for number, cells in table.rows:
        raw = RawRow(number, {col.field: (cells[i] if i < len(cells) else "") for i, col in bound.items()},
                     tuple(table.problems.get(number, ())))
        counts["read"] += 1
        counts["valid"] += isinstance(validate(spec, raw, today), ValidRecord)
    return counts


def _events(path: Path) -> dict[str, int]:
    from connectors.framework import run_file
    from plumbing.clock import utc_now
    from plumbing.settings import load_settings

    settings = load_settings()
    spec, codec = get_feed(DEPARTMENT, FEED), default_codec()
    handler = EventHandler(spec, pseudonymiser=pseudonymiser_of(settings), codec=codec, clock=utc_now)
    summary = asyncio.run(run_file(spec, path, handler, publisher_factory=_DropPublisher, codec=codec,
                                   clock=utc_now, zone=settings.zone))
    return {"read": summary.read, "published": summary.published, "rejected": summary.rejected}


def _kafka(path: Path, bootstrap: str) -> dict[str, int]:
    from plumbing.settings import load_settings
    from services.ingest import run_connector

    settings = load_settings().model_copy(update={"bootstrap": bootstrap})
    summary = asyncio.run(run_connector(settings, DEPARTMENT, FEED, path))
    return {"read": summary.read, "published": summary.published, "rejected": summary.rejected}


def child(stage: str, path: Path, bootstrap: str) -> None:
    """One stage in this process: prints {"seconds", "peak_rss_mb", counts} as JSON."""
    runs: dict[str, Callable[[], dict[str, int]]] = {
        "read": lambda: _read_and_parse(path), "events": lambda: _events(path),
        "kafka": lambda: _kafka(path, bootstrap)}
    start = time.perf_counter()
    counts = runs[stage]()
    seconds = time.perf_counter() - start
    # VmHWM (this process image's peak), not ru_maxrss, which Linux carries over from the parent across exec
    peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, **counts}))


def run_stage(stage: str, path: Path, bootstrap: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", stage, "--file", str(path), "--bootstrap", bootstrap],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise PovwatchError(f"stage {stage} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def table(result: dict[str, Any]) -> str:
    base = result["stages"]["read"]
    base_rate = base["read"] / base["seconds"]
    rows = []
    for stage in STAGES:
        got = result["stages"][stage]
        rate = got["read"] / got["seconds"]
        rows.append([LABELS[stage], f"{got['read']:,}", f"{got['seconds']:.1f}", f"{rate:,.0f}",
                     f"{rate / base_rate:.2f}", f"{got['peak_rss_mb']:.0f}"])
    header = ["stage", "rows", "seconds", "rows/s", "ratio", "peak RSS MB"]
    return "\n".join([render_table(header, rows, right_from=1),
                      f"file: {result['rows']:,} rows, {result['file_mb']:.0f} MB CSV (UTF-8); "
                      f"{os.cpu_count()} cores; one run, compare ratios"])


def bench(rows: int, bootstrap: str | None, port: int) -> dict[str, Any]:
    from plumbing import kafka_local
    from plumbing.kafka_io import ensure_topics
    from plumbing.settings import load_settings

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    path = WORK / f"hospitalization-{rows}.csv"
    write_file(path, rows, dt.date.today())
    settings = load_settings().model_copy(update={"bootstrap": bootstrap or f"127.0.0.1:{port}",
                                                  "kafka_data": WORK / "kafka"})
    own = bootstrap is None
    try:
        if own:
            print(kafka_local.up(settings))
        asyncio.run(ensure_topics(settings.bootstrap, settings.partitions))
        stages = {}
        for stage in STAGES:
            stages[stage] = run_stage(stage, path, settings.bootstrap)
            print(f"{LABELS[stage]}: {stages[stage]}", flush=True)
    finally:
        if own:
            print(kafka_local.down(settings))
    for stage, got in stages.items():
        if got["read"] != rows or got.get("published", rows) != rows:
            raise PovwatchError(f"stage {stage}: expected {rows} rows read and published, got {got}")
    return {"rows": rows, "file_mb": path.stat().st_size / 1e6, "stages": stages,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="povwatch connector: rows/s and peak RSS on a big CSV")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated CSV (1000000)")
    parser.add_argument("--port", type=int, default=19492, help="port of the bench's own broker (19492)")
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.file, args.bootstrap)
        return 0
    if args.rows < 1:
        parser.error("--rows must be >= 1")
    try:
        result = bench(args.rows, args.bootstrap, args.port)
    except PovwatchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    print("\n" + table(result))
    (WORK / "connector.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
