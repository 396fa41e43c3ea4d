"""`povwatch demo`: everything, end to end, on a generated Bortala population.

Starts its own broker (data under the demo directory), creates the topics, loads the roster, starts the monitor
as a child process, runs the five feeds, waits until the monitor has handled every published event, feeds the
alerts into a case DB, and prints a short table: rows per feed, alerts per rule and severity, cases opened,
and whether the alerts are exactly those the generator seeded.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors.framework import Summary
from schemas.codec import default_codec
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services import kafka_local
from services.casefeed.db import open_database
from services.casefeed.service import run_casefeed
from services.demo.population import generate, write_manifest
from services.ingest import load_roster, run_connector
from services.kafka_io import ensure_topics, read_topic
from services.processes import ChildProcess, metric, wait_until
from services.settings import Settings

__all__ = ["run_demo", "read_alerts", "monitor_settled"]


async def read_alerts(bootstrap: str, idle: float = 2.0) -> list[tuple[str, dict[str, Any]]]:
    """Every alert on both alert topics, decoded."""
    codec = default_codec()
    return [(rec.topic, codec.decode(rec.value).record)
            async for rec in read_topic(bootstrap, [ALERTS_HOUSEHOLD, ALERTS_REGIONAL], idle_timeout=idle)]


def monitor_settled(published_events: int) -> Any:
    """A /metrics predicate: every published event handled by every stage it reached."""
    def done(s: Any) -> bool:
        return (metric(s, "povwatch_monitor_processed_total", stage="person") >= published_events
                and metric(s, "povwatch_monitor_processed_total", stage="household")
                >= metric(s, "povwatch_monitor_forwarded_total", to="household")
                and metric(s, "povwatch_monitor_processed_total", stage="village")
                >= metric(s, "povwatch_monitor_forwarded_total", to="village"))
    return done


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[object]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def run_demo(settings: Settings, *, households: int, workdir: Path, keep_running: bool = False) -> int:
    workdir = workdir.resolve()
    demo = settings.model_copy(update={
        "kafka_data": workdir / "kafka", "case_db": f"sqlite:///{workdir / 'cases.db'}",
        "monitor_app_id": "povwatch-demo-monitor",
        "casefeed_group": "povwatch-demo-casefeed",
    })
    print(kafka_local.down(demo))  # a previous demo's broker, if any: the demo starts from nothing
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "files").mkdir(parents=True)
    print(kafka_local.up(demo))
    asyncio.run(ensure_topics(demo.bootstrap, demo.partitions))

    files = generate(workdir / "files", households=households, seed=2024, today=dt.date.today())
    write_manifest(files, workdir / "files" / "manifest.json")
    print(f"generated {households} households and five feed files in {workdir / 'files'}")

    summaries: list[Summary] = [asyncio.run(load_roster(demo, files.roster))]
    env = {"POVWATCH_KAFKA_DATA": str(demo.kafka_data), "POVWATCH_CASE_DB": demo.case_db,
           "POVWATCH_MONITOR_APP_ID": demo.monitor_app_id,
           "POVWATCH_BOOTSTRAP": demo.bootstrap}
    monitor = ChildProcess(["monitor"], env=env, log_path=workdir / "monitor.log")
    try:
        for department, feed, path in files.feeds:
            summaries.append(asyncio.run(run_connector(demo, department, feed, path)))
        published = sum(s.published for s in summaries[1:])
        wait_until(demo.monitor_metrics_port, monitor_settled(published), timeout=300, child=monitor,
                   what=f"the monitor to handle {published} events")
        totals = asyncio.run(run_casefeed(demo, idle_timeout=3))
    finally:
        monitor.stop()
        if not keep_running:
            print(kafka_local.down(demo))

    alerts = asyncio.run(read_alerts(demo.bootstrap)) if keep_running else _alerts_from_db(demo)
    store = open_database(demo.case_db)
    counts = store.counts()
    store.close()

    print()
    print(_table([[s.feed, s.file, s.read, s.published, s.rejected, s.duplicates] for s in summaries],
                 ["feed", "file", "read", "published", "rejected", "duplicates"]))
    print()
    by_rule = Counter((a["rule"], a["severity"]) for _, a in alerts)
    print(_table([[rule, sev, n] for (rule, sev), n in sorted(by_rule.items())], ["rule", "severity", "alerts"]))
    print()
    got = {(a["household_id"], a["rule"], a["severity"]) for t, a in alerts if t == ALERTS_HOUSEHOLD}
    want = {(e.household_id, e.rule, e.severity) for e in files.expected_alerts}
    regional = {a["region_code"] for t, a in alerts if t == ALERTS_REGIONAL}
    print(f"cases open: {counts['cases_open']}   evidence attached: {counts['evidence']}   "
          f"(casefeed: {totals.cases_opened} opened, {totals.duplicates} redelivered)")
    ok = got == want and regional == set(files.expected_regional)
    print(f"household alerts as seeded: {len(got & want)}/{len(want)}, unexpected: {len(got - want)}; "
          f"regional alerts as seeded: {len(regional & files.expected_regional)}/{len(files.expected_regional)}"
          f" -> {'OK' if ok else 'MISMATCH'}")
    print(f"monitor log: {monitor.log_path}; case DB: {demo.case_db}")
    print(f"see the cases: POVWATCH_CASE_DB={demo.case_db} povwatch cases list")
    return 0 if ok else 1


def _alerts_from_db(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """The alerts as the case DB holds them (the broker is already stopped)."""
    store = open_database(settings.case_db)
    try:
        out = []
        for case in store.list_cases():
            for ev in case.evidence:
                if case.subject_kind == "household":
                    out.append((ALERTS_HOUSEHOLD, {"household_id": case.subject_id, "rule": ev.rule,
                                                   "severity": ev.severity}))
                else:
                    out.append((ALERTS_REGIONAL, {"region_code": case.subject_id, "rule": ev.rule,
                                                  "severity": ev.severity}))
        return out
    finally:
        store.close()
