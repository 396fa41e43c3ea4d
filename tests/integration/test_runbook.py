"""The runbook's procedures (docs/runbook.md), each run as the operator runs it: the command line against a real
broker of this module's own, counted exactly.

Start and stop the hub in order; restore an older case-DB backup and replay the alerts since it; replay an event
topic into the monitor; rebuild the monitor after a corrupted state changelog; messages of an older povwatch's
schema read by the upgraded case feed. The households of each test carry its own prefix (ops_world), and every
count is of that prefix only: each new monitor app id judges every event on the broker again, under the same
alert ids.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest
from aiokafka import AIOKafkaProducer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from plumbing.processes import ChildProcess, metric, wait_until
from plumbing.settings import Settings
from schemas.codec import AVRO_DIR, MAGIC
from schemas.topics import ALERTS_HOUSEHOLD
from tests.integration.ops_world import World, free_port, households, roster_file, stays_file
from tests.integration.runbook_world import (
    answers_at,
    assert_stops_cleanly,
    prefix_cases,
    replay_counts,
    run_casefeed_once,
    start_service,
    status_json,
    topic_messages,
    wait_for,
)
from tests.integration.services_world import TOKENS

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 350  # a broker of this module's own
HOSPITALIZATION = "events.medical-security.hospitalization"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("runbook")
    w = World(Settings(bootstrap=f"127.0.0.1:{PORT}", kafka_data=workdir / "kafka"), workdir)
    w.cli("kafka", "up")  # the runbook's first step, as the operator types it
    w.cli("topics", "ensure")
    try:
        yield w
    finally:
        w.stop_all()
        w.cli("kafka", "down")


def _app() -> str:
    return f"rb-{uuid.uuid4().hex[:8]}"




















def test_start_and_stop_in_order(world: World, tmp_path: Path) -> None:
    """Procedure "Start and stop": broker, topics, then the services in the units' order; a department's file
    through its drop folder becomes cases; stopped inputs first, the broker last, each exit 0; started again,
    every message and every committed offset is still there (lag 0)."""
    hhs = households("START", 40)
    app = _app()
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    ports = {name: free_port() for name in ("monitor", "casefeed", "relay", "desk", "intake", "watch")}
    env = {"POVWATCH_CASE_DB": db, "POVWATCH_MONITOR_APP_ID": app, "POVWATCH_CASEFEED_GROUP": f"{app}-cf",
           "POVWATCH_RELAY_GROUP": f"{app}-relay", "POVWATCH_MONITOR_METRICS_PORT": str(ports["monitor"]),
           "POVWATCH_CASEFEED_METRICS_PORT": str(ports["casefeed"]), "POVWATCH_RELAY_METRICS_PORT": str(ports["relay"]),
           "POVWATCH_DESK_PORT": str(ports["desk"]), "POVWATCH_INTAKE_PORT": str(ports["intake"]),
           "POVWATCH_INTAKE_TOKENS": json.dumps(TOKENS)}
    world.cli("roster", "load", str(roster_file(tmp_path / "roster.csv", hhs)), "--delta", env=env)
    drop = tmp_path / "drop"
    drop.mkdir()
    config = tmp_path / "medical-security.toml"
    config.write_text(f'department = "medical-security"\n[service]\nstate = "{tmp_path / "watch.db"}"\n'
                      f'metrics_port = {ports["watch"]}\nscan_seconds = 0.5\nsettle_seconds = 0.5\n'
                      f'[[folders]]\npath = "{drop}"\nfeed = "hospitalization"\n', encoding="utf-8")

    started: list[tuple[str, ChildProcess]] = []
    try:
        for name, args, ready in (  # the order of the units' After= lines
                ("monitor", ["monitor"], answers_at(ports["monitor"], "/metrics")),
                ("casefeed", ["casefeed"], answers_at(ports["casefeed"], "/metrics")),
                ("relay", ["relay"], answers_at(ports["relay"], "/metrics")),
                ("desk", ["desk"], answers_at(ports["desk"], "/healthz")),
                ("intake", ["intake"], answers_at(ports["intake"], "/healthz")),
                ("connector-watch", ["connector", "watch", "--config", str(config)],
                 answers_at(ports["watch"], "/metrics"))):
            started.append((name, start_service(world, args, f"start-{name}", env, ready)))
        stays_file(drop / "stays.csv", [h.members[0] for h in hhs])
        wait_for(lambda: prefix_cases(db, "START")[:2] == (40, 40), "40 cases in the case DB")
        wait_for(lambda: all(g["total_lag"] == 0 for g in status_json(world, env)["groups"]), "every group's lag 0")
        before = status_json(world, env)

        by_name = dict(started)
        for name in ("connector-watch", "intake", "monitor", "casefeed", "relay", "desk"):  # inputs first
            assert_stops_cleanly(by_name[name], name)
        world.cli("kafka", "down")
        assert "not running" in world.cli("kafka", "status")
        world.cli("kafka", "up")
        after = status_json(world, env)
    finally:
        for _, child in started:
            child.kill()
    assert topic_messages(after, HOSPITALIZATION) == topic_messages(before, HOSPITALIZATION) >= 40
    assert topic_messages(after, ALERTS_HOUSEHOLD) == topic_messages(before, ALERTS_HOUSEHOLD)
    assert [(g["group"], g["total_lag"]) for g in after["groups"]] == [(g["group"], 0) for g in before["groups"]]
    assert prefix_cases(db, "START")[:2] == (40, 40)
    assert len(list((drop / "done").iterdir())) >= 1  # the file, moved aside once sent


def test_restore_an_older_backup_then_replay_the_alerts_since_it(world: World, tmp_path: Path) -> None:
    """Procedures "Restore the case DB" and "Replay a topic": the case DB is lost; last night's backup is
    restored; the alerts raised since the backup are read again into it. Nothing is missing, nothing twice."""
    first, second = households("BKPA", 30), households("BKPB", 20)
    world.roster(roster_file(tmp_path / "roster.csv", first + second))
    db = tmp_path / "cases.db"
    env = {"POVWATCH_CASE_DB": f"sqlite:///{db}", "POVWATCH_CASEFEED_GROUP": f"{_app()}-cf"}
    monitor, _ = world.monitor(_app(), "backup-monitor")
    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "a.csv", [h.members[0] for h in first]))
    world.wait_alerts("BKPA", 30, timeout=120, alive=lambda: monitor.alive)
    run_casefeed_once(world, env)
    assert prefix_cases(env["POVWATCH_CASE_DB"], "BKP")[:2] == (30, 30)

    out = world.cli("casedb", "backup", "--dir", str(tmp_path / "backups"), "--keep", "3", env=env)
    [backup] = list((tmp_path / "backups").iterdir())
    assert f"backup: {backup}" in out and "cases " in out
    stamp = re.search(r"(\d{8}T\d{6}Z)", backup.name)
    assert stamp is not None
    # the backup's stamp is to the second: what follows must be later than it, so wait for the clock to pass it
    stamped = dt.datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    while dt.datetime.now(dt.UTC) < stamped + dt.timedelta(seconds=1):
        time.sleep(0.05)  # sleep-ok: the polling interval of a wait for the clock (at most a second)
    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "b.csv", [h.members[0] for h in second]))
    world.wait_alerts("BKPB", 20, timeout=120, alive=lambda: monitor.alive)
    run_casefeed_once(world, env)
    assert prefix_cases(env["POVWATCH_CASE_DB"], "BKP")[:2] == (50, 50)
    complete = prefix_cases(env["POVWATCH_CASE_DB"], "BKP")[2]

    db.unlink()  # the disaster
    out = world.cli("casedb", "restore", str(backup), env=env)
    assert "restored into" in out
    assert prefix_cases(env["POVWATCH_CASE_DB"], "BKP")[:2] == (30, 30)
    out = world.cli("replay", "casefeed", "--since", stamp.group(1), env=env)
    moved = replay_counts(out)
    assert moved[ALERTS_HOUSEHOLD] == 20, out  # exactly the household alerts raised after the backup
    totals = run_casefeed_once(world, env)
    assert totals["consumed"] == sum(moved.values())  # and the regional ones (the village's medical cluster)
    assert totals["cases_opened"] >= 20
    assert prefix_cases(env["POVWATCH_CASE_DB"], "BKP") == (50, 50, complete)

    # replayed again (an operator who is unsure): the case DB keeps one of each
    assert replay_counts(world.cli("replay", "casefeed", "--since", stamp.group(1), env=env)) == moved
    totals = run_casefeed_once(world, env)
    assert (totals["consumed"], totals["cases_opened"], totals["duplicates"]) == (sum(moved.values()), 0,
                                                                                  sum(moved.values()))
    assert prefix_cases(env["POVWATCH_CASE_DB"], "BKP") == (50, 50, complete)

    assert "not a date" in subprocess_refused(world, ["replay", "casefeed", "--since", "yesterday"], env)
    assert monitor.stop() == 0


def test_replaying_an_event_topic_into_the_monitor_adds_nothing_twice(world: World, tmp_path: Path) -> None:
    """Procedure "Replay a topic" into the monitor: its group moved back to a time; the events since are judged
    again and counted as duplicates (the state has seen them); not one alert more."""
    hhs = households("REPL", 25)
    world.roster(roster_file(tmp_path / "roster.csv", hhs))
    app = _app()
    monitor, port = world.monitor(app, "replay-monitor-1")
    wait_until(port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=120, child=monitor)
    since = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "s.csv", [h.members[0] for h in hhs]))
    world.wait_alerts("REPL", 25, timeout=120, alive=lambda: monitor.alive)
    env = {"POVWATCH_MONITOR_APP_ID": app}

    out = subprocess_refused(world, ["replay", "monitor", "--since", since.isoformat()], env)
    assert "stop every monitor process first" in out  # running: refused, in one line
    assert monitor.stop() == 0
    out = world.cli("replay", "monitor", "--since", since.isoformat(), "--topic", HOSPITALIZATION, env=env)
    assert replay_counts(out) == {HOSPITALIZATION: 25}, out
    again, port = world.monitor(app, "replay-monitor-2")
    samples = wait_until(port, lambda s: metric(s, "povwatch_events_duplicate_total") >= 25, timeout=120,
                         child=again, what="the 25 replayed events")
    assert metric(samples, "povwatch_events_duplicate_total") == 25
    alerts = world.alerts("REPL")
    assert len(alerts) == len({a["alert_id"] for a in alerts}) == 25  # not one alert raised twice
    assert again.stop() == 0


def subprocess_refused(world: World, args: list[str], env: dict[str, str]) -> str:
    """Run a povwatch command that must fail with exit 2 and one line; returns that line."""
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **world.env, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def _corrupt(bootstrap: str, topic: str, key: str) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"\x00 not an Avro record", key=key.encode())
        finally:
            await producer.stop()
    asyncio.run(send())


def test_a_corrupted_state_changelog_is_rebuilt_from_the_event_topics(world: World, tmp_path: Path) -> None:
    """Procedure "Recover from a corrupted state changelog": the monitor stops on the record it cannot read, in
    one line; `povwatch rebuild monitor` gives it fresh state; it judges every event again: the same alert ids,
    the same state, and the case DB keeps one of each. New events afterwards are judged on the rebuilt state."""
    hhs = households("CORR", 30)
    world.roster(roster_file(tmp_path / "roster.csv", hhs))
    app = _app()
    env = {"POVWATCH_MONITOR_APP_ID": app, "POVWATCH_CASE_DB": f"sqlite:///{tmp_path / 'cases.db'}",
           "POVWATCH_CASEFEED_GROUP": f"{app}-cf"}
    monitor, port = world.monitor(app, "corrupt-monitor-1")
    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "s.csv", [h.members[0] for h in hhs]))
    original = {a["alert_id"] for a in world.wait_alerts("CORR", 30, timeout=120, alive=lambda: monitor.alive)}
    samples = wait_until(port, lambda s: all(g["total_lag"] == 0 for g in status_json(world, env)["groups"][:3]),
                         timeout=120, child=monitor, what="the monitor's groups at lag 0")
    households_kept = metric(samples, "povwatch_monitor_state_entries", stage="household")
    assert monitor.stop() == 0
    run_casefeed_once(world, env)
    assert prefix_cases(env["POVWATCH_CASE_DB"], "CORR") == (30, 30, sorted(original))

    _corrupt(world.settings.bootstrap, f"{app}.household-state", hhs[3].hid)
    broken = ChildProcess(["monitor"], env={**world.env, **env, "POVWATCH_MONITOR_METRICS_PORT": str(free_port())},
                          log_path=tmp_path / "broken.log")
    try:
        code = broken.proc.wait(timeout=120)
    finally:
        broken.kill()
    log = (tmp_path / "broken.log").read_text(errors="replace")
    assert code == 2, log[-2000:]
    [line] = [ln for ln in log.splitlines() if ln.startswith("povwatch: error:")]
    assert f"{app}.household-state partition" in line and "run `povwatch rebuild monitor`" in line, line
    assert "Traceback" not in log, log[-2000:]

    dry = world.cli("rebuild", "monitor", "--dry-run", env=env)
    assert "would delete and recreate" in dry
    out = world.cli("rebuild", "monitor", env=env)
    assert f"{app}.household-state" in out and "rebuilt:" in out
    assert "warning" not in out  # nothing was lost to retention on this broker
    rebuilt, port = world.monitor(app, "corrupt-monitor-2")
    alerts = world.wait_alerts("CORR", 30, timeout=120, alive=lambda: rebuilt.alive)
    wait_for(lambda: len(world.alerts("CORR")) == 60, "every CORR alert raised again")
    alerts = world.alerts("CORR")
    assert Counter(a["alert_id"] for a in alerts) == {i: 2 for i in original}  # the same ids, once more each
    samples = wait_until(port, lambda s: all(g["total_lag"] == 0 for g in status_json(world, env)["groups"][:3]),
                         timeout=120, child=rebuilt, what="the rebuilt monitor at lag 0")
    assert metric(samples, "povwatch_monitor_state_entries", stage="household") == households_kept
    assert metric(samples, "povwatch_events_duplicate_total") == 0

    later = [h.members[0] for h in hhs[:10]]  # a second stay each, a month later: one alert each
    world.publish("medical-security", "hospitalization",
                  stays_file(tmp_path / "later.csv", later, first=dt.date(2025, 2, 1)))
    world.wait_alerts("CORR", 40, timeout=120, alive=lambda: rebuilt.alive)
    assert rebuilt.stop() == 0
    totals = run_casefeed_once(world, env)
    assert totals["cases_opened"] == 0
    cases, evidence, ids = prefix_cases(env["POVWATCH_CASE_DB"], "CORR")
    assert (cases, evidence) == (30, 40) and set(original) <= set(ids)


def test_alerts_of_the_previous_povwatch_are_read_by_the_upgraded_case_feed(world: World, tmp_path: Path) -> None:
    """Procedure "Upgrade povwatch", the Kafka side: alerts an older povwatch wrote with the released schema v1
    (no `event_topics`) still on the topic when the new version starts are read into the case DB."""
    v1 = parse_schema(json.loads((AVRO_DIR / "released" / "povwatch.alerts.HouseholdAlert" / "v1.avsc")
                                 .read_text(encoding="utf-8")))
    assert "event_topics" not in {f["name"] for f in v1["fields"]}
    raised = dt.datetime(2025, 3, 1, 2, 0, tzinfo=dt.UTC)

    def encoded(n: int) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(bytes.fromhex(fingerprint(to_parsing_canonical_form(v1), "CRC-64-AVRO")))
        record = {"alert_id": f"{'ab' * 15}{n:02d}", "household_id": f"UPGR-{n:05d}", "village_code": "652701101201",
                  "rule": "MEDICAL_EXPENSE", "severity": "MEDIUM", "reason": "住院自付 15,000 元",
                  "event_ids": [f"ev-upgrade-{n}"], "occurred_at": dt.date(2025, 2, 20), "raised_at": raised}
        fastavro.schemaless_writer(buf, v1, {k: record.get(k) for k in (f["name"] for f in v1["fields"])})
        return buf.getvalue()

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=world.settings.bootstrap)
        await producer.start()
        try:
            for n in range(12):
                await producer.send_and_wait(ALERTS_HOUSEHOLD, encoded(n), key=f"UPGR-{n:05d}".encode())
        finally:
            await producer.stop()
    asyncio.run(send())
    env = {"POVWATCH_CASE_DB": f"sqlite:///{tmp_path / 'cases.db'}", "POVWATCH_CASEFEED_GROUP": f"{_app()}-cf"}
    totals = run_casefeed_once(world, env)
    assert totals["dead_letters"] == 0
    cases, evidence, _ = prefix_cases(env["POVWATCH_CASE_DB"], "UPGR")
    assert (cases, evidence) == (12, 12)
