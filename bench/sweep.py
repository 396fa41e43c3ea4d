"""The year-end sweep: a prefecture's roster and a year of every department's files, from the files to the last
alert in the case DB, on a real broker, the real connectors, the real monitor and the real case feed.

    .venv/bin/python bench/sweep.py [--persons 300000] [--scale 1.0] [--partitions 12] [--parallel 6]
                                    [--jobs 2] [--port 19792] [--store memory|rocksdb] [--work DIR] [--per-file]

1. generate (not timed in the sweep): a roster of about `--persons` persons in realistic households (the demo's
   population generator, services/demo/population.py), and a year of every feed of the catalogue in the shares
   of bench/year.py (x `--scale`), written as each department's files (CSV, one per period: monthly, quarterly,
   per term or yearly), the rows made from each feed's declaration with realistic values by bench/yearfiles.py
   (mostly benign rows, the share of risky ones of bench/year.py PROFILES, a few bad ones per file). `--jobs`
   processes write them.
2. the sweep, timed from the first file read to the last alert in the case DB, on its own broker
   (127.0.0.1:PORT, `--partitions` per topic; the controller takes PORT + 1; the monitor's and the case feed's
   /metrics on PORT + 2 and PORT + 3), with the monitor and the case feed (SQLite case DB) running from the start:
     roster      `povwatch roster load` (topics and the case DB's households and members)
     connectors  one process per department (bench/sweep_connector.py), `--parallel` at a time, each running its
                 files in period order through one connector run (services.ingest.run_connector_files: what
                 `povwatch connector run` with several files does; `--per-file`: a run per file, as before)
     drained     the monitor has handled every published event (its /metrics)
     case DB     the case feed has consumed every alert on alerts.household and alerts.regional
   then checks the counts exactly: every file's rows read = published + rejected, rejected = the bad rows
   written; the distinct alerts on the alert topics = the alerts (evidence) in the case DB.

Peak RSS and CPU seconds of every process (/proc, sampled every half second; each connector process reports its
own), the machine's busy cores over the sweep, and what bounds it: the process whose CPU time comes closest to the
wall time, and whether the machine's cores were saturated (by these processes or others). Written to
sweep.json and sweep.txt in the work directory (`--work`, var/bench-sweep), which is wiped first.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "bench")):  # run as a script: the project's packages and the bench modules
    if _path not in sys.path:
        sys.path.insert(0, _path)

from measure import Watch, machine_busy, proc_stats  # noqa: E402
from pipeline import roster_households, start_monitor  # noqa: E402
from year import Plan, plan_year  # noqa: E402
from yearfiles import Population, write_year_file  # noqa: E402

from connectors.catalog import get_feed  # noqa: E402
from connectors.departments.bureau import ROSTER  # noqa: E402
from connectors.framework import RawRow, ValidRecord, bind_headers, validate  # noqa: E402
from connectors.readers import read_table  # noqa: E402
from plumbing import kafka_local  # noqa: E402
from plumbing.kafka_io import ensure_topics, group_offsets, topic_end_offsets  # noqa: E402
from plumbing.processes import ChildProcess, metric, scrape, wait_until  # noqa: E402
from plumbing.settings import Settings, load_settings  # noqa: E402
from plumbing.table import render_table  # noqa: E402
from schemas.errors import EnvironmentProblem, PovwatchError  # noqa: E402
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL  # noqa: E402
from services.demo.feeds import Household  # noqa: E402
from services.demo.population import generate  # noqa: E402
from services.demo.run import monitor_settled, read_alerts  # noqa: E402
from services.monitor.rules import age_at  # noqa: E402

WORK = ROOT / "var" / "bench-sweep"
PERSONS_PER_HOUSEHOLD = 3.85  # the demo generator's mean household size (2-6 members, weights 2:3:4:3:1)
_POPULATION: Population | None = None  # the generator processes' copy (fork), set before the pool starts


# --- generating the year ---------------------------------------------------------------------------------------
def valid_roster_rows(roster: Path, today: dt.date) -> set[int]:
    """Row numbers of the roster file that the bureau's connector rejects."""
    table = read_table(roster)
    bound = bind_headers(ROSTER, table.headers)
    rejected = set()
    for number, cells in table.rows:
        raw = RawRow(number, {col.field: (cells[i] if i < len(cells) else "") for i, col in bound.items()},
                     tuple(table.problems.get(number, ())))
        if not isinstance(validate(ROSTER, raw, today), ValidRecord):
            rejected.add(number)
    return rejected


def count_units(households: list[Household], today: dt.date) -> dict[str, int]:
    ages = [age_at(m.birth, today) for h in households for m in h.members]
    return {"person": len(ages), "adult": sum(a >= 18 for a in ages), "student": sum(6 <= a <= 22 for a in ages),
            "household": len(households), "village": len({h.village for h in households})}


@dataclass(frozen=True)
class FileJob:
    department: str
    feed: str
    period: int  # 1 .. files a year
    rows: int
    path: Path


def file_jobs(plans: list[Plan], files_dir: Path) -> list[FileJob]:
    return [FileJob(p.department, p.feed, i + 1, p.per_file,
                    files_dir / p.department / f"{p.feed}-{p.files:02d}-{i + 1:02d}.csv")
            for p in plans for i in range(p.files)]


def _write_one(job: FileJob, today: dt.date) -> dict[str, Any]:
    assert _POPULATION is not None, "write_year sets the population before the files are written"
    began = time.process_time()
    made = write_year_file(get_feed(job.department, job.feed), _POPULATION, job.path, count=job.rows,
                           seed=f"sweep:{job.department}:{job.feed}:{job.period}", today=today)
    return {"path": str(job.path), "rows": made.rows, "bad_rows": made.bad_rows, "risky_rows": made.risky_rows,
            "department": job.department, "feed": job.feed, "cpu_s": time.process_time() - began}


def write_year(jobs: list[FileJob], households: list[Household], today: dt.date, processes: int) -> dict[str, Any]:
    """Write every file, the biggest first, in `processes` processes: {path: {rows, bad_rows, risky_rows, ...}}."""
    global _POPULATION
    _POPULATION = Population(households, today)
    for job in jobs:
        job.path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(jobs, key=lambda j: -j.rows)
    if processes <= 1:
        made = [_write_one(job, today) for job in ordered]
    else:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            made = list(pool.map(_write_one, ordered, [today] * len(ordered), chunksize=1))
    return {m["path"]: m for m in made}


# --- a department's connector process: bench/sweep_connector.py (imports the connector only) ------------------


@dataclass
class Department:
    name: str
    manifest: Path
    rows: int
    proc: subprocess.Popen[str] | None = None
    started: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)


def run_connectors(departments: list[Department], bootstrap: str, parallel: int, watch: Watch,
                   on_tick: Any = None, per_file: bool = False) -> None:
    """Every department's connector process, `parallel` at a time (the biggest first); raises if one fails."""
    waiting = sorted(departments, key=lambda d: -d.rows)
    running: list[Department] = []
    while waiting or running:
        while waiting and len(running) < parallel:
            dep = waiting.pop(0)
            log = open(WORK / "logs" / f"connector-{dep.name}.log", "w")
            dep.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("sweep_connector.py")),
                                         dep.name, str(dep.manifest), bootstrap]
                                        + (["--per-file"] if per_file else []), stdout=subprocess.PIPE,
                                        stderr=log, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            dep.started = time.perf_counter()
            watch.add(f"connector {dep.name}", dep.proc.pid)
            running.append(dep)
        for dep in list(running):
            assert dep.proc is not None
            if dep.proc.poll() is None:
                continue
            out = dep.proc.stdout.read() if dep.proc.stdout else ""
            running.remove(dep)
            if dep.proc.returncode != 0:
                for other in running:
                    assert other.proc is not None
                    other.proc.kill()
                tail = (WORK / "logs" / f"connector-{dep.name}.log").read_text(errors="replace")[-1500:]
                raise EnvironmentProblem(f"the {dep.name} connector failed ({dep.proc.returncode}): {tail}")
            dep.result = json.loads(out.strip().splitlines()[-1])
            dep.result["wall_s"] = time.perf_counter() - dep.started
        if on_tick is not None:
            on_tick()
        time.sleep(0.2)


# --- the sweep -------------------------------------------------------------------------------------------------
def _broker_pid(settings: Settings) -> int | None:
    try:
        return int((Path(settings.kafka_data) / "broker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _end_offsets_total(bootstrap: str, topics: list[str]) -> int:
    return sum(asyncio.run(topic_end_offsets(bootstrap, topics)).values())


def sweep(persons: int, scale: float, partitions: int, parallel: int, jobs: int, port: int,
          store: str, per_file: bool = False) -> dict[str, Any]:
    print(kafka_local.down(load_settings().model_copy(update={"bootstrap": f"127.0.0.1:{port}",
                                                              "kafka_data": WORK / "kafka"})))
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    today = dt.date.today()
    households_n = max(200, round(persons / PERSONS_PER_HOUSEHOLD))

    # 1. generate
    t = time.perf_counter()
    demo = generate(WORK / "roster", households=households_n, seed=2024, today=today)
    rejected = valid_roster_rows(demo.roster, today)
    households = roster_households(demo.roster, rejected)
    units = count_units(households, today)
    plans = plan_year(units, scale)
    jobs_list = file_jobs(plans, WORK / "files")
    t_files = time.perf_counter()
    made = write_year(jobs_list, households, today, jobs)
    t_generate = time.perf_counter() - t
    t_files = time.perf_counter() - t_files
    rows_total = sum(m["rows"] for m in made.values())
    bad_total = sum(m["bad_rows"] for m in made.values())
    risky_total = sum(m["risky_rows"] for m in made.values())
    generate_cpu = {"files": sum(m["cpu_s"] for m in made.values()), "files_wall": t_files}
    files_mb = sum(Path(p).stat().st_size for p in made) / 1e6
    print(f"generated in {t_generate:.0f} s (the files {t_files:.0f} s, {generate_cpu['files']:.0f} CPU s in {jobs} "
          f"processes): {units['person']} persons in {units['household']} households, {units['village']} villages; "
          f"{len(jobs_list)} files, {rows_total} rows ({bad_total} bad, {risky_total} risky), {files_mb:.0f} MB",
          flush=True)

    departments, files_a_year = [], {p.feed: p.files for p in plans}
    for dep in sorted({j.department for j in jobs_list}):
        # the year in order: each file at its period's share of the year, then by feed
        mine = sorted((j for j in jobs_list if j.department == dep),
                      key=lambda j: ((j.period - 1) / files_a_year[j.feed], j.feed))
        manifest = WORK / "logs" / f"manifest-{dep}.json"
        manifest.write_text(json.dumps([[j.feed, str(j.path)] for j in mine]))
        departments.append(Department(dep, manifest, sum(j.rows for j in mine)))

    # 2. the sweep
    settings = load_settings().model_copy(update={
        "bootstrap": f"127.0.0.1:{port}", "kafka_data": WORK / "kafka", "partitions": partitions,
        "monitor_app_id": f"povwatch-sweep-{uuid.uuid4().hex[:8]}", "monitor_metrics_port": port + 2,
        "casefeed_metrics_port": port + 3, "case_db": f"sqlite:///{WORK / 'cases.db'}",
        "casefeed_group": f"povwatch-sweep-casefeed-{uuid.uuid4().hex[:8]}"})
    env = {"POVWATCH_BOOTSTRAP": settings.bootstrap, "POVWATCH_CASE_DB": settings.case_db,
           "POVWATCH_PARTITIONS": str(partitions), "POVWATCH_CASEFEED_GROUP": settings.casefeed_group,
           "POVWATCH_CASEFEED_METRICS_PORT": str(settings.casefeed_metrics_port)}
    watch = Watch()
    monitor: ChildProcess | None = None
    casefeed: ChildProcess | None = None
    phases: dict[str, float] = {}
    try:
        print(kafka_local.up(settings), flush=True)
        broker_pid = _broker_pid(settings)
        if broker_pid is not None:
            watch.add("broker (Kafka)", broker_pid)
        asyncio.run(ensure_topics(settings.bootstrap, partitions))
        monitor = start_monitor(settings, WORK / "logs" / "monitor.log", store=store, store_dir=WORK / "store")
        watch.add("monitor", monitor.proc.pid)
        casefeed = ChildProcess(["casefeed"], env=env, log_path=WORK / "logs" / "casefeed.log")
        watch.add("casefeed", casefeed.proc.pid)
        wait_until(settings.monitor_metrics_port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=300,
                   child=monitor, what="the monitor to start")
        wait_until(settings.casefeed_metrics_port, lambda s: any(n.startswith("povwatch_casefeed") for n, _ in s),
                   timeout=300, child=casefeed, what="the case feed to start")

        cpu0 = machine_busy()
        load_at_start = os.getloadavg()
        t0 = time.perf_counter()
        with open(WORK / "logs" / "roster.log", "w") as log:
            roster = subprocess.Popen([sys.executable, "-m", "services.cli", "roster", "load", str(demo.roster),
                                       "--json"], stdout=subprocess.PIPE, stderr=log, text=True,
                                      env={**os.environ, **env})
            watch.add("roster load", roster.pid)
            out, _ = roster.communicate()
        if roster.returncode != 0:
            raise EnvironmentProblem(f"roster load failed ({roster.returncode}): see {WORK / 'logs' / 'roster.log'}")
        roster_summary = json.loads(out.strip().splitlines()[-1])
        phases["roster"] = time.perf_counter() - t0
        print(f"roster loaded in {phases['roster']:.0f} s: {roster_summary['published']} persons", flush=True)
        wait_until(settings.monitor_metrics_port,
                   lambda s: metric(s, "povwatch_registry_entries", table="persons") >= roster_summary["published"],
                   timeout=1800, child=monitor, what="the monitor to read the roster")
        rss_roster = proc_stats(monitor.proc.pid)

        def alive() -> None:
            for child in (monitor, casefeed):
                if child is not None and not child.alive:
                    raise EnvironmentProblem(f"{child.args[0]} exited during the sweep:\n{child.tail()}")

        t1 = time.perf_counter()
        run_connectors(departments, settings.bootstrap, parallel, watch, on_tick=alive, per_file=per_file)
        phases["connectors"] = time.perf_counter() - t1
        published = sum(s["published"] for d in departments for s in d.result["summaries"])
        at_connectors = scrape(settings.monitor_metrics_port)
        # events released after waiting for their person are counted again: never below 0
        behind = max(0.0, published - metric(at_connectors, "povwatch_monitor_processed_total", stage="person"))
        # the household stage (the rules) reads what the person stage forwarded: its own backlog
        household_behind = max(0.0, metric(at_connectors, "povwatch_monitor_forwarded_total", to="household")
                               - metric(at_connectors, "povwatch_monitor_processed_total", stage="household"))
        print(f"connectors done in {phases['connectors']:.0f} s: {published} events published; the monitor "
              f"{behind:.0f} events behind at its person stage, {household_behind:.0f} at its household stage",
              flush=True)

        final = wait_until(settings.monitor_metrics_port, monitor_settled(published), timeout=7200, child=monitor,
                           what=f"the monitor to handle {published} events", interval=0.5)
        phases["drained"] = time.perf_counter() - t0
        watch.sample("monitor")
        rss_drained = proc_stats(monitor.proc.pid)
        print(f"monitor drained at {phases['drained']:.0f} s", flush=True)
        alert_topics = [ALERTS_HOUSEHOLD, ALERTS_REGIONAL]
        while True:  # every alert message on the topics consumed into the case DB, and no new one meanwhile
            messages = _end_offsets_total(settings.bootstrap, alert_topics)
            wait_until(settings.casefeed_metrics_port,
                       lambda s, n=messages: metric(s, "povwatch_casefeed_alerts_consumed_total") >= n,
                       timeout=7200, child=casefeed, what=f"the case feed to consume {messages} alerts", interval=0.5)
            committed = asyncio.run(group_offsets(settings.bootstrap, settings.casefeed_group))
            if (_end_offsets_total(settings.bootstrap, alert_topics) == messages
                    and sum(v for (topic, _), v in committed.items() if topic in alert_topics) >= messages):
                break
            time.sleep(0.5)
        phases["case_db"] = time.perf_counter() - t0
        cpu1 = machine_busy()
        print(f"last alert in the case DB at {phases['case_db']:.0f} s", flush=True)
        watch.stop()
        distinct = len({alert["alert_id"] for _, alert in asyncio.run(read_alerts(settings.bootstrap))})
    finally:
        for child in (casefeed, monitor):
            if child is not None:
                child.stop()
        print(kafka_local.down(settings))

    # the counts, exactly
    from services.casedb.database import open_database

    store_db = open_database(settings.case_db)
    try:
        counts = store_db.counts()
    finally:
        store_db.close()
    problems = []
    for dep in departments:
        for s in dep.result["summaries"]:
            want = made[s["path"]]
            if s["read"] != want["rows"] or s["rejected"] != want["bad_rows"] \
                    or s["read"] != s["published"] + s["rejected"] + s["duplicates"]:
                problems.append(f"{s['path']}: read {s['read']} published {s['published']} rejected {s['rejected']}"
                                f" duplicates {s['duplicates']}; written {want['rows']} rows, {want['bad_rows']} bad")
    return {
        "persons": units["person"], "units": units, "scale": scale, "partitions": partitions, "parallel": parallel,
        "store": store, "files": len(jobs_list), "files_mb": files_mb, "rows": rows_total, "bad_rows": bad_total,
        "risky_rows": risky_total, "generate_cpu_s": generate_cpu, "per_file": per_file,
        "plans": [vars(p) | {"rows": p.rows} for p in plans],
        "published": published, "roster_persons": roster_summary["published"],
        "seconds": {"generate": t_generate, **phases},
        "monitor": {"behind_when_connectors_done": behind, "household_behind_when_connectors_done": household_behind,
                    "alerts_raised": metric(final, "povwatch_alerts_total"),
                    "unmatched": metric(final, "povwatch_events_unmatched_total"),
                    "duplicates": metric(final, "povwatch_events_duplicate_total"),
                    "pending": metric(final, "povwatch_events_pending"),
                    "too_late": metric(final, "povwatch_events_too_late_total"),
                    "rss_mb_roster_read": rss_roster.rss_mb if rss_roster else None,
                    "rss_mb_drained": rss_drained.rss_mb if rss_drained else None,
                    "state_entries": {stage: metric(final, "povwatch_monitor_state_entries", stage=stage)
                                      for stage in ("person", "household", "village")}},
        "alerts": {"messages": messages, "distinct": distinct, "case_db_evidence": counts["evidence"],
                   "cases_open": counts["cases_open"]},
        # a connector's own figures (read in the process itself), the others' as sampled
        "processes": {name: vars(s) for name, s in watch.stats.items() if not name.startswith("connector ")}
        | {f"connector {d.name}": {"peak_rss_mb": d.result["peak_rss_mb"], "rss_mb": 0.0, "cpu_s": d.result["cpu_s"],
                                   "write_mb": 0.0} for d in departments},
        "connectors": {d.name: {k: d.result[k] for k in ("seconds", "wall_s", "cpu_s", "peak_rss_mb")}
                       | {"rows": sum(s["read"] for s in d.result["summaries"]), "files": len(d.result["summaries"])}
                       for d in departments},
        "machine": {"cores": os.cpu_count(), "busy_cores": (cpu1.busy - cpu0.busy) / (cpu1.at - cpu0.at),
                    "iowait_cores": (cpu1.iowait - cpu0.iowait) / (cpu1.at - cpu0.at),
                    "load_average": os.getloadavg(), "load_average_at_start": load_at_start},
        "count_problems": problems,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# --- what it means ---------------------------------------------------------------------------------------------
def bounds(result: dict[str, Any]) -> list[str]:
    """What bounds the sweep, from the CPU each process spent over the wall time, the machine's busy cores and the
    broker's writes (pure: reads the result only)."""
    wall = result["seconds"]["case_db"]
    m, procs = result["machine"], result["processes"]
    by_role: dict[str, float] = {}
    for name, stats in procs.items():
        role = "connectors" if name.startswith("connector ") else name
        by_role[role] = by_role.get(role, 0.0) + stats["cpu_s"]
    ours = sum(by_role.values()) / wall
    others = max(0.0, m["busy_cores"] - ours)
    ranked = sorted(by_role.items(), key=lambda kv: -kv[1])
    lines = [f"CPU over the {wall:.0f} s sweep: the machine's {m['cores']} cores {m['busy_cores']:.2f} busy on "
             f"average ({ours:.2f} by the sweep's processes, {others:.2f} by others on the machine); iowait "
             f"{m['iowait_cores']:.2f} cores",
             "cores used on average, by process: " + ", ".join(f"{k} {v / wall:.2f}" for k, v in ranked)]
    saturated = m["busy_cores"] >= 0.9 * m["cores"]
    top, top_cpu = ranked[0]
    drain_tail = result["seconds"]["drained"] - result["seconds"]["roster"] - result["seconds"]["connectors"]
    if saturated:
        lines.append(f"bound: the machine's CPU (cores saturated); of the sweep's own work the {top} took the most "
                     f"({top_cpu:.0f} CPU s, {top_cpu / sum(by_role.values()):.0%})")
    else:
        lines.append(f"bound: not the machine's CPU as a whole ({m['busy_cores']:.2f} of {m['cores']} cores): the "
                     f"{top} with {top_cpu / wall:.2f} cores comes closest to one core (one Python process uses one)")
    lines.append(f"the monitor was {result['monitor']['behind_when_connectors_done']:.0f} events behind at its person "
                 f"stage and {result['monitor'].get('household_behind_when_connectors_done', 0):.0f} at its household "
                 f"stage when the connectors finished, and drained {drain_tail:.0f} s later; the case feed took "
                 f"{result['seconds']['case_db'] - result['seconds']['drained']:.0f} s more")
    broker = procs.get("broker (Kafka)")
    if broker is not None:
        lines.append(f"disk: the broker wrote {broker['write_mb']:.0f} MB ({broker['write_mb'] / wall:.1f} MB/s)"
                     + ("; iowait is small: not disk-bound" if m["iowait_cores"] < 0.1 else ""))
    return lines


def report(result: dict[str, Any]) -> str:
    s, n = result["seconds"], result["published"]
    wall = s["case_db"]
    phases = [
        ["generate the roster and the year's files (not timed)", f"{s['generate']:.0f}", "",
         f"the files: {result['generate_cpu_s']['files'] / max(1, result['rows']) * 1000:.3f} CPU ms a row"],
        ["roster load (file -> topics and case DB)", f"{s['roster']:.0f}", f"{s['roster']:.0f}",
         f"{result['roster_persons'] / s['roster']:,.0f} persons/s"],
        ["connectors (every department's files -> Kafka)", f"{s['connectors']:.0f}",
         f"{s['roster'] + s['connectors']:.0f}", f"{n / s['connectors']:,.0f} events/s"],
        ["monitor drained (every event judged)", "", f"{s['drained']:.0f}",
         f"{n / (s['drained'] - s['roster']):,.0f} events/s"],
        ["last alert in the case DB", "", f"{wall:.0f}", f"{n / wall:,.0f} events/s overall"],
    ]
    procs = [[name, f"{p['peak_rss_mb']:.0f}", f"{p['cpu_s']:.0f}", f"{p['cpu_s'] / wall:.2f}",
              f"{p['cpu_s'] / max(1, result['roster_persons'] if name == 'roster load' else n) * 1000:.3f}",
              f"{p['write_mb']:.0f}"]
             for name, p in sorted(result["processes"].items(), key=lambda kv: (kv[0].startswith("connector"), kv[0]))]
    connectors_cpu = sum(p["cpu_s"] for name, p in result["processes"].items() if name.startswith("connector "))
    procs.append(["all connectors", "", f"{connectors_cpu:.0f}", f"{connectors_cpu / wall:.2f}",
                  f"{connectors_cpu / max(1, result['rows']) * 1000:.3f} a row", ""])
    deps = [[name, f"{c['rows']:,}", str(c["files"]), f"{c['wall_s']:.0f}", f"{c['rows'] / c['seconds']:,.0f}",
             f"{c['peak_rss_mb']:.0f}"]
            for name, c in sorted(result["connectors"].items(), key=lambda kv: -kv[1]["rows"])]
    a, m = result["alerts"], result["monitor"]
    exact = a["distinct"] == a["case_db_evidence"] and not result["count_problems"]
    return "\n".join([
        f"persons {result['persons']:,} ({result['units']['household']:,} households, {result['units']['village']} "
        f"villages); {result['files']} files, {result['rows']:,} rows ({result['bad_rows']} bad, "
        f"{result['risky_rows']:,} risky), {result['files_mb']:.0f} MB; {n:,} events published; scale "
        f"{result['scale']}, {result['partitions']} partitions, {result['parallel']} connector processes at a time "
        f"({'a producer per file' if result['per_file'] else 'one producer per department'}), store "
        f"{result['store']}",
        "",
        render_table(["phase", "seconds", "since the first file (s)", "rate"], phases, right_from=1),
        "",
        render_table(["process", "peak RSS MB", "CPU s", "cores", "CPU ms per event (roster: person)",
                      "written MB"], procs, right_from=1),
        "",
        render_table(["department connector", "rows", "files", "seconds", "rows/s (own time)", "peak RSS MB"], deps,
                     right_from=1),
        "",
        f"alerts: {a['messages']:,} messages, {a['distinct']:,} distinct; {a['case_db_evidence']:,} in the case DB "
        f"({a['cases_open']:,} cases open) -> {'exact' if exact else 'MISMATCH'}; {a['messages'] / max(1, n):.3f} "
        f"alert messages and {a['distinct'] / max(1, n):.3f} distinct alerts an event; monitor: {m['unmatched']:.0f} "
        f"unmatched, {m['duplicates']:.0f} duplicates, {m['too_late']:.0f} too late",
        f"monitor RSS: {m['rss_mb_roster_read'] or 0:.0f} MB with the roster read, {m['rss_mb_drained'] or 0:.0f} MB "
        f"when every event was judged (its state: {m['state_entries']['household']:,.0f} households' records)",
        *[f"count problem: {p}" for p in result["count_problems"][:10]],
        *bounds(result),
        f"machine: {result['machine']['cores']} cores, load average (1 min) at the start "
        f"{result['machine']['load_average_at_start'][0]:.1f}, at the end {result['machine']['load_average'][0]:.1f} "
        f"(shared); one run",
    ])


def main(argv: list[str] | None = None) -> int:
    global WORK
    parser = argparse.ArgumentParser(description="povwatch year-end sweep: a year of every feed, files to case DB")
    parser.add_argument("--persons", type=int, default=300_000, help="roster persons, about (300000; at least 800)")
    parser.add_argument("--scale", type=float, default=1.0, help="the year's volumes times this (1.0)")
    parser.add_argument("--partitions", type=int, default=12, help="partitions per topic (12)")
    parser.add_argument("--parallel", type=int, default=6, help="department connector processes at a time (6)")
    parser.add_argument("--jobs", type=int, default=2, help="processes writing the files (2)")
    parser.add_argument("--port", type=int, default=19792,
                        help="the sweep's broker (19792); the controller, monitor and case feed take the next three")
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory", help="the monitor's store")
    parser.add_argument("--work", type=Path, default=WORK, help="the work directory, wiped first (var/bench-sweep)")
    parser.add_argument("--per-file", action="store_true",
                        help="each file through its own connector run (a producer each), as before the several-files "
                             "run; for comparison")
    args = parser.parse_args(argv)
    WORK = args.work.resolve()
    if args.persons < 800 or args.scale <= 0 or args.partitions < 1 or args.parallel < 1 or args.jobs < 1:
        parser.error("--persons must be >= 800, --scale > 0, --partitions, --parallel and --jobs >= 1")
    try:
        result = sweep(args.persons, args.scale, args.partitions, args.parallel, args.jobs, args.port, args.store,
                       args.per_file)
    except PovwatchError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    (WORK / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    print("\n" + text)
    (WORK / "sweep.txt").write_text(text + "\n")
    print(f"written: {WORK / 'sweep.json'}")
    exact = result["alerts"]["distinct"] == result["alerts"]["case_db_evidence"] and not result["count_problems"]
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
