"""The monitor as a prefecture runs it, on a real broker of its own (this module stops and restarts it).

A backlog larger than every buffer, a SIGKILL mid-drain and a restart, events before their roster, a roster
snapshot with a removal, a move and a status change, two workers and a SIGKILL of one mid-burst, the broker
stopped and restarted under the monitor. Every test counts alerts by `alert_id` against exactly what its
generated files must raise (ops_world: one MEDIUM alert per hospitalisation, nothing else).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from plumbing import kafka_local
from plumbing.kafka_io import ensure_topics, topic_offsets
from plumbing.processes import metric, scrape, wait_until
from plumbing.settings import Settings
from schemas.topics import TopicSpec
from services.casedb.database import open_database
from services.cases.listing import cases_to_json
from tests.integration.ops_world import World, households, roster_file, stays_file, vehicles_file

pytestmark = pytest.mark.integration

# a broker of this module's own, next to the session broker's port
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 600
HOSPITALIZATION = "events.medical-security.hospitalization"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("ops")
    settings = Settings(bootstrap=f"127.0.0.1:{PORT}", kafka_data=workdir / "kafka")
    kafka_local.up(settings)
    w = World(settings, workdir)
    w.cli("topics", "ensure")
    try:
        yield w
    finally:
        w.stop_all()
        kafka_local.down(settings)


def _app() -> str:
    return f"ops-{uuid.uuid4().hex[:8]}"


def _events_on(world: World) -> int:
    """Hospitalisation events on the module's broker so far."""
    offsets = asyncio.run(topic_offsets(world.settings.bootstrap, [HOSPITALIZATION])).get(HOSPITALIZATION, [])
    return sum(end - start for start, end in offsets)


def _distinct(alerts: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(a["alert_id"]): a for a in alerts}


def test_two_workers_split_the_work_and_survive_a_sigkill_mid_burst(world: World, tmp_path: Path) -> None:
    """First in the module: its case feed reads every alert on the broker into a case DB."""
    hhs = households("PAIR", 1500, members=2)
    world.roster(roster_file(tmp_path / "roster.csv", hhs))
    app = _app()
    one, port_one = world.monitor(app, "pair-1")
    two, port_two = world.monitor(app, "pair-2")

    def assigned(port: int) -> float:
        try:
            return metric(scrape(port), "povwatch_monitor_partitions_assigned", stage="person")
        except OSError:  # not serving /metrics yet
            return 0.0

    deadline = time.monotonic() + 60
    while not (assigned(port_one) >= 1 and assigned(port_two) >= 1 and assigned(port_one) + assigned(port_two) == 3):
        assert time.monotonic() < deadline, "the two workers did not split the partitions"
        time.sleep(0.5)  # sleep-ok: the polling interval of a wait with a deadline
    for port in (port_one, port_two):
        wait_until(port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=60, what="both ready")

    people = [p for h in hhs for p in h.members]
    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "stays.csv", people, 4))  # 12,000
    wait_until(port_two, lambda s: metric(s, "povwatch_monitor_processed_total", stage="household") >= 500,
               timeout=120, child=two, what="the second worker to be busy", interval=0.05)
    two.kill()  # mid-burst: its partitions move to the first worker after the session timeout
    alerts = world.wait_alerts("PAIR", 12_000, timeout=240, alive=lambda: one.alive)
    distinct = _distinct(alerts)
    assert len(distinct) == 12_000
    assert set(Counter(str(a["household_id"]) for a in distinct.values()).values()) == {8}
    # the survivor takes every partition of every stage once the dead worker's session has expired (the alerts
    # may all be out before that, when the dead worker had already handled its share of a stage)
    wait_until(port_one, lambda s: all(metric(s, "povwatch_monitor_partitions_assigned", stage=stage) == 3
                                       for stage in ("person", "household", "village")),
               timeout=60, child=one, what="the survivor to hold every partition")
    one.stop()

    # the case DB gets each alert once, however often it was sent
    db = tmp_path / "cases.db"
    world.cli("casefeed", "--timeout", "5",
              env={"POVWATCH_CASE_DB": f"sqlite:///{db}", "POVWATCH_CASEFEED_GROUP": f"ops-cases-{app}",
                   "POVWATCH_CASEFEED_METRICS_PORT": "0"})
    store = open_database(f"sqlite:///{db}")
    try:
        cases = json.loads(cases_to_json(store.list_cases()))
    finally:
        store.close()
    evidence = [e["alert_id"] for c in cases for e in c["evidence"] if str(c["household_or_region"]).startswith("PAIR")]
    assert sorted(evidence) == sorted(distinct)


def test_a_backlog_larger_than_every_buffer_is_drained_even_across_a_sigkill(world: World, tmp_path: Path) -> None:
    """30,000 events wait on the topic before the monitor starts: three batches of 10,000 and many times the
    fetch buffers. A first monitor drains them all; a second one (own app id) is SIGKILLed mid-drain and
    restarted: it ends with exactly the same alerts, none lost, none extra."""
    hhs = households("BACKLOG", 3000, members=2)
    world.roster(roster_file(tmp_path / "roster.csv", hhs))
    people = [p for h in hhs for p in h.members]
    earlier = _events_on(world)  # earlier tests' events, about people still in the roster: one alert each too
    published = world.publish("medical-security", "hospitalization", stays_file(tmp_path / "stays.csv", people, 5))
    assert published["published"] == 30_000
    total = earlier + 30_000

    monitor, port = world.monitor(_app(), "backlog")
    wait_until(port, lambda s: metric(s, "povwatch_monitor_processed_total", stage="household") >= total,
               timeout=240, child=monitor, what=f"the monitor to drain {total} events")
    samples = scrape(port)
    assert metric(samples, "povwatch_monitor_processed_total", stage="person") == total
    assert metric(samples, "povwatch_monitor_forwarded_total", stage="person") == total
    assert metric(samples, "povwatch_monitor_processed_total", stage="household") == total
    assert metric(samples, "povwatch_events_duplicate_total") == 0
    assert metric(samples, "povwatch_alerts_total", rule="MEDICAL_EXPENSE", severity="MEDIUM") == total
    monitor.stop()
    first = _distinct(world.wait_alerts("BACKLOG", 30_000, timeout=60))
    assert len(first) == 30_000
    per_household = Counter(str(a["household_id"]) for a in first.values())
    assert set(per_household.values()) == {10} and len(per_household) == 3000  # 2 members x 5 stays each

    # the same backlog again, for a monitor killed mid-drain: its restart finishes the job
    app = _app()
    victim, port = world.monitor(app, "backlog-killed")
    wait_until(port, lambda s: metric(s, "povwatch_monitor_processed_total", stage="household") >= 8_000,
               timeout=240, child=victim, what="the monitor to be mid-drain", interval=0.05)
    victim.kill()
    survivor, port = world.monitor(app, "backlog-restarted")
    wait_until(port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=120, child=survivor,
               what="the restarted monitor to be ready")
    # every stage committed to the end of its inputs (the person stage may have finished before the kill, so
    # the restart can have nothing left for it: its counters are no sign of progress)
    world.wait_monitor_settled(app, survivor, timeout=240)
    samples = scrape(port)
    assert metric(samples, "povwatch_monitor_processed_total", stage="person") < total  # it resumed, not restarted
    survivor.stop()
    again = _distinct(world.alerts("BACKLOG"))
    assert again.keys() == first.keys()  # exactly the same alerts: nothing lost, nothing invented


def _store(store: str, tmp_path: Path) -> dict[str, str]:
    """The monitor's environment for its table and state store."""
    return {"POVWATCH_MONITOR_STORE": store, "POVWATCH_MONITOR_STORE_DIR": str(tmp_path / "store")}


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_events_before_their_roster_wait_for_it(world: World, tmp_path: Path, store: str) -> None:
    prefix = f"EARLY{store[0].upper()}"
    hhs = households(prefix, 50, members=2)
    people = [p for h in hhs for p in h.members]
    monitor, port = world.monitor(_app(), f"early-{store}", **_store(store, tmp_path))
    wait_until(port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=60, child=monitor,
               what="the monitor to start")
    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "stays.csv", people, 2))
    samples = wait_until(port, lambda s: metric(s, "povwatch_events_pending", stage="person") == 200, timeout=60,
                         child=monitor, what="200 events to wait for their persons")
    assert metric(samples, "povwatch_events_parked_total", stage="person") == 200
    assert world.alerts(prefix) == []
    world.roster(roster_file(tmp_path / "roster.csv", hhs))  # the roster arrives after the events
    alerts = world.wait_alerts(prefix, 200, timeout=60, alive=lambda: monitor.alive)
    assert len(_distinct(alerts)) == 200
    samples = wait_until(port, lambda s: metric(s, "povwatch_events_pending", stage="person") == 0, timeout=30,
                         child=monitor, what="nothing left waiting")
    assert metric(samples, "povwatch_events_released_total", stage="person") == 200
    assert metric(samples, "povwatch_events_unmatched_total") == 0
    monitor.stop()


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_the_broker_stopped_and_restarted_under_the_monitor(world: World, tmp_path: Path, store: str) -> None:
    prefix = f"BOUNCE{store[0].upper()}"
    hhs = households(prefix, 500, members=2)
    world.roster(roster_file(tmp_path / "roster.csv", hhs))
    people = [p for h in hhs for p in h.members]
    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "a.csv", people, 10))  # 10,000
    monitor, port = world.monitor(_app(), f"bounce-{store}", POVWATCH_MONITOR_MAX_RECORDS="500",  # small batches
                                  **_store(store, tmp_path))
    samples = wait_until(port, lambda s: metric(s, "povwatch_monitor_processed_total", stage="household") >= 1_000,
                         timeout=120, child=monitor, what="the monitor to be mid-stream", interval=0.02)
    kafka_local.down(world.settings)  # under the monitor, mid-stream
    assert metric(samples, "povwatch_monitor_processed_total", stage="household") < 10_000
    # the outage's length is the behaviour: longer than a send's 15 s timeout (no metric tells when a send gave up:
    # waiting for povwatch_monitor_recoveries_total to rise timed out after 90 s on a loaded machine)
    time.sleep(20)  # sleep-ok: the broker stays down longer than a send's 15 s timeout
    assert monitor.alive, monitor.tail(20)
    kafka_local.up(world.settings)
    world.publish("medical-security", "hospitalization",
                  stays_file(tmp_path / "b.csv", people, 2, first=dt.date(2025, 6, 1)))
    alerts = world.wait_alerts(prefix, 12_000, timeout=240, alive=lambda: monitor.alive)
    distinct = _distinct(alerts)
    assert len(distinct) == 12_000
    assert set(Counter(str(a["household_id"]) for a in distinct.values()).values()) == {24}
    monitor.stop()


def test_a_roster_snapshot_removes_moves_and_changes_status(world: World, tmp_path: Path) -> None:
    """Runs last: its full snapshots tombstone everyone else's households."""
    removed, origin, target, changed = households("SNAP", 4, members=2)
    mover = origin.members[1]
    world.roster(roster_file(tmp_path / "v1.csv", [removed, origin, target, changed]), delta=False)
    app = _app()
    monitor, port = world.monitor(app, "snapshot", POVWATCH_MONITOR_PENDING_GRACE_DAYS=str(3 / 86400))
    wait_until(port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=60, child=monitor,
               what="the monitor to start")

    origin.members.remove(mover)
    target.members.append(mover)
    changed.status = "风险消除"
    summary = world.roster(roster_file(tmp_path / "v2.csv", [origin, target, changed]), delta=False)
    assert summary["households"]["removed"] == 1 and summary["persons"]["removed"] == 2
    world.wait_monitor_settled(app, monitor, timeout=180)  # it has read the new registry records

    world.publish("medical-security", "hospitalization", stays_file(tmp_path / "stays.csv", [removed.members[0],
                                                                                               mover]))
    world.publish("public-security", "vehicle-purchase",
                  vehicles_file(tmp_path / "vehicles.csv", [changed.members[0], target.members[0]]))
    world.wait_alerts("SNAP", 2, timeout=60, alive=lambda: monitor.alive)
    world.wait_monitor_settled(app, monitor)  # every event judged: any alert beyond the two is on the topic now
    alerts = world.alerts("SNAP")
    got = {(a["household_id"], a["rule"], a["severity"]) for a in alerts}
    assert got == {(target.hid, "MEDICAL_EXPENSE", "MEDIUM"),  # the mover's stay counts for his new household
                   (target.hid, "ASSET_PURCHASE", "LOW")}  # still 监测中; the 风险消除 household's car: nothing
    # the removed person's stay raises nothing: it waits, then is listed as unmatched - like every earlier
    # test's events, whose people the full snapshots removed; only the mover's stay found its person
    expected = _events_on(world) - 1
    wait_until(port, lambda s: metric(s, "povwatch_events_unmatched_total") == expected, timeout=60,
               child=monitor, what=f"{expected} events to be given up on")
    listed = json.loads(world.cli("monitor", "unmatched", "--json", env={"POVWATCH_MONITOR_APP_ID": app}))
    assert len(listed) == expected
    assert {(u["feed"], u["stage"]) for u in listed} == {("medical-security hospitalization", "person")}
    monitor.stop()



def test_start_up_problems_are_one_line(world: World) -> None:
    """No broker, or topics that are not co-partitioned: exit 2 with one line, no traceback, nothing created."""
    app = _app()
    asyncio.run(ensure_topics(world.settings.bootstrap, 3, [TopicSpec(f"{app}.household-events", partitions=1)]))
    env = {**os.environ, **world.env, "POVWATCH_MONITOR_APP_ID": app, "POVWATCH_MONITOR_METRICS_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "monitor"], env=env, capture_output=True,
                          text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("povwatch: error")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert "co-partitioned" in errors[0] and f"{app}.household-events 1" in errors[0]
    assert "Traceback" not in done.stderr

    env["POVWATCH_BOOTSTRAP"] = "127.0.0.1:1"
    down = subprocess.run([sys.executable, "-m", "services.cli", "monitor"], env=env, capture_output=True,
                          text=True, timeout=120)
    errors = [line for line in down.stderr.splitlines() if line.startswith("povwatch: error")]
    assert down.returncode == 2 and len(errors) == 1 and "cannot reach Kafka" in errors[0], down.stderr
    assert "Traceback" not in down.stderr
