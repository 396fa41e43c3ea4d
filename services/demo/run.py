"""`povwatch demo`: everything, end to end, on a generated Bortala population.

Starts its own broker (data under the demo directory), creates the topics, loads the roster, starts the monitor
and the intake API as child processes, runs a file for every feed of the catalogue, posts reports to every intake
channel, waits until the monitor has handled every published event, feeds the alerts into a case DB, and prints a
short table: rows per feed (read = published + rejected + duplicates, as the generator seeded them), requests per
intake channel, the facts the monitor kept, and a row per rule: the alerts expected (the whole pipeline simulated in
one process by services/demo/oracle.py, the designed scenarios checked in it) against those the case DB holds, by
alert id and severity, exactly.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.framework import Summary
from plumbing import kafka_local
from plumbing.clock import utc_now
from plumbing.kafka_io import ensure_topics, read_topic
from plumbing.processes import ChildProcess, metric, wait_until
from plumbing.settings import Settings
from plumbing.table import render_table
from schemas.alerts import Rule
from schemas.catalog import INTAKE_CHANNELS, ROSTER, event_feed
from schemas.codec import default_codec
from schemas.errors import EnvironmentProblem
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services.casedb.database import open_database
from services.casefeed.service import run_casefeed
from services.demo.feeds import IntakeRequest
from services.demo.oracle import OracleAlert, Simulation, designed_problems, simulate
from services.demo.population import DemoFiles, generate, write_manifest
from services.demo.secure import DemoParties, grant
from services.ingest import load_roster, run_connector

__all__ = ["run_demo", "read_alerts", "monitor_settled", "post_reports", "IntakeTally"]


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


@dataclass
class IntakeTally:
    """What one intake channel answered: requests posted, 202s (a replay included), other answers; the distinct
    events accepted; requests answered otherwise than the generator expected."""

    channel: str
    posted: int = 0
    accepted: int = 0
    refused: int = 0
    event_ids: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)


def _post(url: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
    """POST one JSON body: (status, answer, replayed)."""
    request = urllib.request.Request(url, data=json.dumps(body, ensure_ascii=False).encode("utf-8"), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return (response.status, json.loads(response.read() or b"{}"),
                    response.headers.get("Idempotent-Replayed") == "true")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}"), False


def post_reports(base_url: str, tokens: dict[str, str], requests: Sequence[IntakeRequest]) -> list[IntakeTally]:
    """Post every request with its channel's token; count the answers per channel (in catalogue order)."""
    tallies = {channel.feed: IntakeTally(channel.feed) for channel in INTAKE_CHANNELS}
    for request in requests:
        tally = tallies[request.channel]
        status, answer, replayed = _post(f"{base_url}/v1/intake/{request.channel}", tokens[request.channel],
                                         request.body)
        tally.posted += 1
        if status == 202:
            tally.accepted += 1
            tally.event_ids.add(str(answer["event_id"]))
        else:
            tally.refused += 1
        if status != request.expect or replayed != request.replay:
            tally.unexpected.append(f"{status}{' (replayed)' if replayed else ''}: {answer}")
    return list(tallies.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_intake(demo: Settings, env: dict[str, str], workdir: Path) -> tuple[ChildProcess, str, dict[str, str]]:
    """`povwatch intake` on POVWATCH_INTAKE_PORT when it is set, else on a free port, with tokens made for this
    run; returns once it answers on /metrics."""
    tokens = {channel.feed: secrets.token_urlsafe(24) for channel in INTAKE_CHANNELS}
    port = demo.intake_port if "intake_port" in demo.model_fields_set else _free_port()
    child = ChildProcess(["intake"], env={**env, "POVWATCH_INTAKE_TOKENS": json.dumps(tokens),
                                          "POVWATCH_INTAKE_HOST": "127.0.0.1", "POVWATCH_INTAKE_PORT": str(port)},
                         log_path=workdir / "intake.log")
    try:
        wait_until(port, lambda s: any(name.startswith("povwatch_intake") for name, _ in s), timeout=60, child=child,
                   what="the intake API to answer")
    except EnvironmentProblem:
        child.stop()
        raise
    return child, f"http://127.0.0.1:{port}", tokens


def _table(rows: Sequence[Sequence[object]], header: Sequence[str], left: int = 1) -> str:
    """A plain table; the first `left` columns aligned left, the others right."""
    return render_table(header, [[str(c) for c in r] for r in rows], right_from=left)


def run_demo(settings: Settings, *, households: int, workdir: Path, keep_running: bool = False,
             secure: bool = False) -> int:
    workdir = workdir.resolve()
    demo = settings.model_copy(update={
        "kafka_data": workdir / "kafka", "case_db": f"sqlite:///{workdir / 'cases.db'}",
        "monitor_app_id": "povwatch-demo-monitor",
        "casefeed_group": "povwatch-demo-casefeed",
        "pki_dir": workdir / "pki", "security_protocol": "PLAINTEXT",  # its own broker, its own CA
    })
    print(kafka_local.down(demo))  # a previous demo's broker, if any: the demo starts from nothing
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "files").mkdir(parents=True)
    parties = DemoParties.issue(demo) if secure else DemoParties(False)  # secure: a certificate per party
    print(kafka_local.up(demo, secure=secure))
    with parties.acting("admin"):
        asyncio.run(ensure_topics(demo.bootstrap, demo.partitions))
    print(grant(demo, parties))

    started = utc_now()
    files = generate(workdir / "files", households=households, seed=2024, today=started.astimezone(demo.zone).date())
    write_manifest(files, workdir / "files" / "manifest.json")
    print(f"generated {households} households, {len(files.feeds)} feed files and {len(files.intake)} intake requests "
          f"in {workdir / 'files'}")
    simulation = simulate(files.roster, files.feeds, files.intake, key=demo.checked_key(), rules=demo.rules,
                          zone=demo.zone, now=started)
    designed = designed_problems(files.designed, simulation, key=demo.checked_key(), now=started)
    print(f"expected: {len(simulation.alerts)} alerts from {simulation.events} events (the pipeline simulated in one "
          f"process); designed rows as designed: {len(files.designed) - len(designed)}/{len(files.designed)}")

    with parties.acting("roster"):
        summaries: list[Summary] = [asyncio.run(load_roster(demo, files.roster))]
    env = {"POVWATCH_KAFKA_DATA": str(demo.kafka_data), "POVWATCH_CASE_DB": demo.case_db,
           "POVWATCH_MONITOR_APP_ID": demo.monitor_app_id,
           "POVWATCH_BOOTSTRAP": demo.bootstrap}
    monitor = ChildProcess(["monitor"], env={**env, **parties.env("monitor")}, log_path=workdir / "monitor.log")
    intake: ChildProcess | None = None
    try:
        intake, base_url, tokens = _start_intake(demo, {**env, **parties.env("intake")}, workdir)
        summaries += asyncio.run(_run_feeds(demo, files, parties))
        tallies = post_reports(base_url, tokens, files.intake)
        published = sum(s.published for s in summaries[1:]) + sum(len(t.event_ids) for t in tallies)
        samples = wait_until(demo.monitor_metrics_port, monitor_settled(published), timeout=300, child=monitor,
                             what=f"the monitor to handle {published} events")
        with parties.acting("casefeed"):
            totals = asyncio.run(run_casefeed(demo, idle_timeout=3))
    finally:
        if intake is not None:
            intake.stop()
        monitor.stop()
        if not keep_running:
            print(kafka_local.down(demo))

    raised = _alerts_in_db(demo)
    store = open_database(demo.case_db)
    counts = store.counts()
    store.close()

    print()
    rows_ok = _print_feeds(summaries, files)
    print()
    intake_ok = _print_intake(tallies)
    print()
    facts = {stage: int(metric(samples, "povwatch_monitor_facts_kept_total", stage=stage))
             for stage in ("household", "village")}
    print(f"facts kept by the monitor: {sum(facts.values())} ({facts['household']} of households, "
          f"{facts['village']} of villages)")
    print()
    alerts_ok = _print_rules(simulation, raised)
    print(f"cases open: {counts['cases_open']}   evidence attached: {counts['evidence']}   "
          f"(casefeed: {totals.cases_opened} opened, {totals.duplicates} redelivered)")
    for problem in designed:
        print(f"designed row not as designed: {problem}")
    ok = alerts_ok and not designed and rows_ok and intake_ok
    print(f"alerts in the case DB as expected: {'yes' if alerts_ok else 'NO'}; every feed's rows and every intake "
          f"answer as generated: {'yes' if rows_ok and intake_ok else 'NO'} -> {'OK' if ok else 'MISMATCH'}")
    print(f"monitor log: {monitor.log_path}; case DB: {demo.case_db}")
    print(f"see the cases: POVWATCH_CASE_DB={demo.case_db} povwatch cases list")
    return 0 if ok else 1


async def _run_feeds(settings: Settings, files: DemoFiles, parties: DemoParties) -> list[Summary]:
    """Every feed file through its connector, in the generator's order, in one event loop; each department's
    connector as its department (secured: on the department's certificate)."""
    summaries = []
    for department, feed, path in files.feeds:
        with parties.acting(department):
            summaries.append(await run_connector(settings, department, feed, path))
    return summaries


def _print_feeds(summaries: Sequence[Summary], files: DemoFiles) -> bool:
    """The row per feed (the roster first); True when every file's rows were read, published, rejected and
    skipped as duplicates exactly as the generator wrote them."""
    rows, off = [], []
    for s in summaries:
        title = ROSTER.title if s.feed == ROSTER.feed else event_feed(s.department, s.feed).title
        rows.append([s.department, s.feed, title, Path(s.file).name, s.read, s.published, s.rejected, s.duplicates])
        if s.feed == ROSTER.feed:
            want_rejected, want_read, want_duplicates = files.bad_rows.get("roster", 0), s.read, 0
        else:
            want_rejected, want_read = files.bad_rows[s.feed], files.rows[s.feed]
            want_duplicates = files.duplicates[s.feed]
        if (s.read, s.rejected, s.duplicates) != (want_read, want_rejected, want_duplicates) or not s.balanced:
            off.append(s.feed)
    totals = [sum(s.read for s in summaries[1:]), sum(s.published for s in summaries[1:]),
              sum(s.rejected for s in summaries[1:]), sum(s.duplicates for s in summaries[1:])]
    rows.append(["", f"{len(summaries) - 1} feeds", "", "", *totals])
    print(_table(rows, ["department", "feed", "title", "file", "read", "published", "rejected", "duplicates"],
                 left=4))
    print(f"rows as generated (read = published + rejected + duplicates, rejected = bad rows seeded): "
          f"{len(summaries) - len(off)}/{len(summaries)}" + (f"; off: {', '.join(off)}" if off else ""))
    return not off


def _print_intake(tallies: Sequence[IntakeTally]) -> bool:
    """The row per intake channel; True when every request got the answer the generator expected."""
    titles = {channel.feed: channel.title for channel in INTAKE_CHANNELS}
    print(_table([["intake", t.channel, titles[t.channel], t.posted, t.accepted, t.refused, len(t.event_ids)]
                  for t in tallies],
                 ["department", "channel", "title", "posted", "accepted", "refused", "events"], left=3))
    unexpected = [f"{t.channel} {answer}" for t in tallies for answer in t.unexpected]
    print(f"intake answers as expected (202, a replay answered 202 with the same event, one 422 each): "
          f"{'yes' if not unexpected else 'NO: ' + '; '.join(unexpected[:5])}")
    return not unexpected


def _alerts_in_db(settings: Settings) -> dict[str, tuple[str, str, str]]:
    """The alerts as the case DB holds them: alert id -> (subject, rule, severity)."""
    store = open_database(settings.case_db)
    try:
        return {ev.alert_id: (case.household_or_region, ev.rule, ev.severity)
                for case in store.list_cases() for ev in case.evidence}
    finally:
        store.close()


def _print_rules(simulation: Simulation, raised: dict[str, tuple[str, str, str]]) -> bool:
    """A row per rule: alerts expected and raised, by severity; True when the case DB holds exactly the expected
    alerts (the same ids, subjects, rules and severities)."""
    expected: dict[str, OracleAlert] = simulation.alerts
    want = {a.alert_id: (a.subject, a.rule, a.severity) for a in expected.values()}
    rows = []
    for rule in Rule:
        mine = {k: v for k, v in want.items() if v[1] == rule}
        got = {k: v for k, v in raised.items() if v[1] == rule}

        def by_severity(alerts: dict[str, tuple[str, str, str]]) -> str:
            found = Counter(v[2] for v in alerts.values())
            return " ".join(f"{s[0]}{found[s]}" for s in ("HIGH", "MEDIUM", "LOW") if found[s]) or "-"

        rows.append([rule.value, len(mine), by_severity(mine), len(got), by_severity(got),
                     "ok" if mine == got else "MISMATCH"])
    rows.append(["total", len(want), "", len(raised), "", "ok" if want == raised else "MISMATCH"])
    print(_table(rows, ["rule", "expected", "by severity", "raised", "by severity", ""], left=1))
    return want == raised
