"""The case DB's two bulk writes, timed before and after: the roster import and the case feed's store path.

    .venv/bin/python bench/casedb.py [--persons 100000] [--alerts 20000] [--batch 500] [--backends sqlite,postgresql]
                                     [--baseline REF] [--work DIR]

1. A roster of about `--persons` persons (the demo's population generator, services/demo/population.py; kept in
   the work directory, made again only for another size) and `--alerts` household alert messages over as many
   households as half that number: 80 % new alerts (three rules, three severities, so cases and case alerts are
   shared and raised), 10 % exact redeliveries of an earlier alert, 10 % an earlier alert again with a second
   department's event (one fact, one alert: its evidence grows).
2. For each code - this checkout ("after") and, with `--baseline REF` (default `main`; `--baseline ''`: none),
   the project as git has it at REF ("before", unpacked with `git archive` into the work directory) - and each
   backend (SQLite: a fresh file; PostgreSQL: a fresh schema on scripts/postgres.sh's server, port
   $POVWATCH_PG_PORT), child processes of that code time, each in a process of its own (its peak RSS its own):
     roster      `Cases.import_roster` into an empty case DB, then the same file again (everything unchanged);
                 "of it DB" is that less `read_roster` alone (reading and validating the file, no database),
                 timed first, after a warm-up on the file's first rows
     case feed   the alert messages through the casefeed's `record_isolated` (what `handle_batch` calls), in
                 batches of `--batch` (the consumer's MAX_RECORDS) - one transaction each.
CPU is the benchmark process's own (the PostgreSQL server's is not counted: see wall and rows/s). One run on a
shared machine: compare before with after, not with other runs. Written to casedb.json and casedb.txt in the work
directory (default var/bench-casedb).
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODE = Path(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else ROOT  # a child: whose code
if str(CODE) not in sys.path:  # run as a script: the project's packages (a child: the code it measures)
    sys.path.insert(0, str(CODE))

from plumbing.table import render_table  # noqa: E402

WORK = ROOT / "var" / "bench-casedb"
KEY = b"bench-casedb-pseudonymisation-key"
TODAY = dt.date(2026, 12, 1)
NOW = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)
RULES = ("MEDICAL_EXPENSE", "DISASTER_LOSS", "SCHOOL_DROPOUT")
SEVERITIES = ("LOW", "MEDIUM", "HIGH")
TOPICS = ("events.medical-security.hospitalization", "events.public-security.registration-change")


# --- the inputs ----------------------------------------------------------------------------------------------------
def make_roster(work: Path, persons: int) -> Path:
    """The demo population's roster of about `persons` persons (3.85 a household), made once per size."""
    from services.demo.population import generate

    where = work / f"roster-{persons}"
    roster = where / "roster.csv"
    if not roster.is_file():
        shutil.rmtree(where, ignore_errors=True)
        generate(where, households=max(200, round(persons / 3.85)), seed=2024, today=TODAY)
    return roster


def alert_messages(count: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """`count` (topic, alert) pairs: new alerts, redeliveries and second departments' events (module docstring)."""
    rng = random.Random(seed)
    households = max(1, count // 2)
    made: list[dict[str, Any]] = []
    out: list[tuple[str, dict[str, Any]]] = []
    for n in range(count):
        draw = rng.random()
        if made and draw < 0.10:
            alert = rng.choice(made)
        elif made and draw < 0.20:
            earlier = rng.choice(made)
            alert = {**earlier, "event_ids": [*earlier["event_ids"], f"ev-{n}"],
                     "event_topics": [*earlier["event_topics"], TOPICS[1]]}
        else:
            h = rng.randrange(households)
            alert = {"alert_id": f"al-{n}", "household_id": f"H-{h:07d}", "village_code": f"6527011002{h % 50:02d}",
                     "rule": rng.choice(RULES), "severity": rng.choice(SEVERITIES),
                     "reason": "住院自付 12,000 元，超过 10,000 元", "event_ids": [f"ev-{n}"],
                     "event_topics": [TOPICS[0]], "occurred_at": dt.date(2026, 11, 28),
                     "raised_at": dt.datetime(2026, 11, 30, 8, 30, tzinfo=dt.UTC)}
            made.append(alert)
        out.append(("alerts.household", alert))
    return out


# --- a child: one measurement, with the code under test ------------------------------------------------------------
def _peak_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss would keep the parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(work: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def child_roster(db: str, roster: Path) -> dict[str, Any]:
    from connectors.pseudonym import Pseudonymiser
    from schemas.codec import default_codec
    from services.casedb.database import open_database
    from services.cases.roster import read_roster
    from services.cases.store import Cases

    store = open_database(db)
    cases = Cases(store, pseudonym_key=lambda: KEY, clock=lambda: NOW)
    head = roster.with_name("warm-up.csv")  # the first rows: every lazy import and cache warm before timing
    with roster.open("rb") as whole:
        head.write_bytes(b"".join(itertools.islice(whole, 40)))
    read_roster(head, pseudonymiser=Pseudonymiser(KEY), codec=default_codec(), clock=lambda: NOW)
    try:
        read, read_wall, read_cpu = _timed(lambda: read_roster(
            roster, pseudonymiser=Pseudonymiser(KEY), codec=default_codec(), clock=lambda: NOW))
        first, wall, cpu = _timed(lambda: cases.import_roster(roster))
        again, wall2, cpu2 = _timed(lambda: cases.import_roster(roster))
    finally:
        cases.close()
    assert first.households_added == len(read.households) and again.households_unchanged == len(read.households)
    return {"persons": len(read.members), "households": len(read.households), "read_wall": read_wall,
            "read_cpu": read_cpu, "import_wall": wall, "import_cpu": cpu, "again_wall": wall2, "again_cpu": cpu2,
            "peak_rss_mb": _peak_mb()}


def child_feed(db: str, alerts: int, batch: int) -> dict[str, Any]:
    from services.casedb.database import open_database
    from services.casedb.store import CaseStore
    from services.casefeed.handling import Refusal, record_isolated

    messages = alert_messages(alerts)
    store = open_database(db)
    feed = CaseStore(store.engine, clock=lambda: NOW)
    try:
        def run() -> list[Any]:
            return [r for start in range(0, len(messages), batch)
                    for r in record_isolated(feed, messages[start:start + batch])]

        results, wall, cpu = _timed(run)
        counts = store.counts()
    finally:
        store.close()
    outcomes = {"new": sum(1 for r in results if not isinstance(r, Refusal) and not r.duplicate and not r.updated),
                "duplicate": sum(1 for r in results if not isinstance(r, Refusal) and r.duplicate),
                "updated": sum(1 for r in results if not isinstance(r, Refusal) and r.updated)}
    return {"alerts": len(messages), **outcomes, **counts, "wall": wall, "cpu": cpu, "peak_rss_mb": _peak_mb()}


# --- the parent ----------------------------------------------------------------------------------------------------
def _run_child(code: Path, args: Sequence[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--code", str(code), *args], env=env,
                          capture_output=True, text=True, cwd=code)
    if done.returncode != 0:
        raise SystemExit(f"bench/casedb.py: a child failed ({' '.join(args[:2])}): "
                         f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _baseline(work: Path, ref: str) -> Path:
    target = work / f"code-{ref.replace('/', '_')}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"bench/casedb.py: git archive {ref} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def _postgres() -> str:
    """scripts/postgres.sh's server (started if needed, on $POVWATCH_PG_PORT): its URL."""
    started = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start"], capture_output=True, text=True)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines:
        raise SystemExit(f"bench/casedb.py: scripts/postgres.sh start failed: {started.stderr.strip()}")
    return lines[-1]


def _fresh(backend: str, work: Path, pg_url: str | None, label: str) -> str:
    if backend == "sqlite":
        path = work / f"{label}.db"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    from sqlalchemy import create_engine, text

    assert pg_url is not None
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS casedb_bench CASCADE"))
            conn.execute(text("CREATE SCHEMA casedb_bench"))
    finally:
        engine.dispose()
    return f"{pg_url}?options=-csearch_path%3Dcasedb_bench"


def report(results: list[dict[str, Any]]) -> str:
    """The table of every measurement (see the module docstring), one line per code, backend and path."""
    body = []
    for r in results:
        ro, fe = r["roster"], r["feed"]
        persons, rows = ro["persons"], ro["persons"] + ro["households"]
        body.append([r["code"], r["backend"], "roster import (empty DB)", f"{ro['import_cpu'] * 1000 / persons:.3f}",
                     f"{(ro['import_cpu'] - ro['read_cpu']) * 1000 / persons:.3f}", f"{ro['import_wall']:.1f}",
                     f"{rows / ro['import_wall']:,.0f}", f"{ro['peak_rss_mb']:.0f}"])
        body.append([r["code"], r["backend"], "roster import again", f"{ro['again_cpu'] * 1000 / persons:.3f}",
                     f"{(ro['again_cpu'] - ro['read_cpu']) * 1000 / persons:.3f}", f"{ro['again_wall']:.1f}",
                     f"{rows / ro['again_wall']:,.0f}", ""])
        body.append([r["code"], r["backend"], f"case feed ({fe['alerts']:,} alerts)",
                     f"{fe['cpu'] * 1000 / fe['alerts']:.3f}", "", f"{fe['wall']:.1f}",
                     f"{fe['alerts'] / fe['wall']:,.0f}", f"{fe['peak_rss_mb']:.0f}"])
    return render_table(["code", "backend", "path", "CPU ms/unit", "of it DB", "wall s", "units/s", "peak MB"],
                        body, right_from=3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--baseline", default="main", help="a git ref to compare with ('': none)")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--code", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # roster DB FILE | feed DB ALERTS BATCH
        what, db, *rest = args.child
        out = child_roster(db, Path(rest[0])) if what == "roster" else child_feed(db, int(rest[0]), int(rest[1]))
        print(json.dumps(out))
        return 0
    backends = [b for b in args.backends.split(",") if b]
    if not set(backends) <= {"sqlite", "postgresql"}:
        raise SystemExit(f"bench/casedb.py: --backends {args.backends!r}: sqlite and/or postgresql")
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    roster = make_roster(work, args.persons)
    codes = ([("before", _baseline(work, args.baseline))] if args.baseline else []) + [("after", ROOT)]
    pg_url = _postgres() if "postgresql" in backends else None
    results = []
    for backend in backends:
        for label, code in codes:
            print(f"{label} / {backend}: roster import of {roster} ...", flush=True)
            ro = _run_child(code, ["--child", "roster", _fresh(backend, work, pg_url, label), str(roster)])
            print(f"{label} / {backend}: case feed, {args.alerts:,} alerts ...", flush=True)
            fe = _run_child(code, ["--child", "feed", _fresh(backend, work, pg_url, label), str(args.alerts),
                                   str(args.batch)])
            results.append({"code": label, "backend": backend, "roster": ro, "feed": fe})
    text = report(results)
    (work / "casedb.json").write_text(json.dumps({"persons": args.persons, "alerts": args.alerts,
                                                  "batch": args.batch, "baseline": args.baseline,
                                                  "results": results}, indent=2))
    (work / "casedb.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
