"""Two more faults of a cluster of three that loses nothing (docs/cluster.md), on ports of this module's own
(POVWATCH_TEST_BROKER_PORT + 940 to + 945 for the nodes and their controllers; the monitor's and the case feed's
/metrics on + 946 and + 947): each test starts its own cluster and stops it.

  * a broker frozen (SIGSTOP) for 30 s in the middle of a 60,000-row connector run, the monitor and the case feed
    running, then resumed (SIGCONT): the leader of most partitions of the event topic;
  * a broker's disk full: node 2's log dir is a small tmpfs, filled (a ballast file) in the middle of the run;
    Kafka takes the log dir offline and, as it is the node's only one, stops the node; the operator sees it in
    the broker's log and in `povwatch kafka status`; the run goes on on the two others; the ballast is removed,
    node 2 restarts and catches up.

Each counts every row in, every event once by event_id on its topic, every expected alert once in the case DB,
and records what each process did during the fault (printed; the figures are in docs/cluster.md). The disk test
needs `mount` (root): it skips, saying why, where mounting is not permitted.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plumbing.kafka_cluster import Cluster
from plumbing.processes import ChildProcess
from schemas.topics import ALERTS_HOUSEHOLD
from tests.integration.cluster_world import (
    APP,
    BASE,
    HOSPITALIZATION,
    ClusterWorld,
    alerts_on_topics,
    case_alert_ids,
    casefeed_caught_up,
    events_by_id,
    published,
    wait_for,
    write_world_files,
)
from tests.integration.fault_record import LogWindow, Progress
from tests.integration.runbook_world import assert_stops_cleanly

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRST_PORT = BASE + 940  # nodes on + 940, + 942, + 944; controllers one above each
MONITOR_METRICS = BASE + 946
CASEFEED_METRICS = BASE + 947
FREEZE_S = 30.0
HOUSEHOLDS, PER_PERSON, ALERTING_EVERY = 2000, 15, 15  # 60,000 rows, 4,000 of them alerting
DISK_NODE = 2
TMPFS_MB = 256
LEFT_FREE = 512 * 1024  # bytes the ballast leaves: the broker's own writes fill the rest


def _start(tmp_path: Path, before_up: Callable[[Cluster], None] = lambda _: None) -> ClusterWorld:
    return ClusterWorld.start(tmp_path, first_port=FIRST_PORT, monitor_metrics=MONITOR_METRICS,
                              casefeed_metrics=CASEFEED_METRICS, before_up=before_up)


def _dead(*children: tuple[str, ChildProcess]) -> Callable[[], str]:
    def which() -> str:
        return "; ".join(f"{name} exited ({c.proc.returncode}):\n{c.tail(25)}" for name, c in children
                         if not c.alive)
    return which


class Run:
    """The roster loaded, the monitor and the case feed ready, the connector started on the big file."""

    def __init__(self, world: ClusterWorld, prefix: str) -> None:
        self.world, self.prefix = world, prefix
        roster, stays, self.rows, self.alerting = write_world_files(world.workdir, prefix, HOUSEHOLDS,
                                                                    per_person=PER_PERSON,
                                                                    alerting_every=ALERTING_EVERY)
        assert (self.rows, self.alerting) == (60_000, 4_000)
        world.world.roster(roster, delta=False)
        self.monitor, self.casefeed = world.monitor(), world.casefeed()
        world.wait_monitor_ready(self.monitor)
        self.dead = _dead(("the monitor", self.monitor), ("the case feed", self.casefeed))
        self.connector_out = world.workdir / "connector.out"
        self.connector_log = world.workdir / "connector.log"
        with open(self.connector_out, "wb") as out, open(self.connector_log, "wb") as err:
            self.connector = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "connector", "run", "medical-security", "hospitalization",
                 str(stays), "--json"], env={**os.environ, **world.world.env}, stdout=out, stderr=err)
        self.logs = LogWindow({"connector": self.connector_log, "monitor": world.workdir / "monitor.log",
                               "case feed": world.workdir / "casefeed.log"}, bare=("connector",))
        self.progress = Progress({"monitor": (MONITOR_METRICS, "povwatch_events_consumed_total"),
                                  "case feed": (CASEFEED_METRICS, "povwatch_casefeed_alerts_consumed_total")})

    def wait_published(self, share: float) -> int:
        """Until `share` of the rows are on the event topic (the connector still running); how many are."""
        want = int(self.rows * share)
        wait_for(lambda: published(self.world.bootstrap, HOSPITALIZATION) >= want or self.connector.poll() is not None,
                 f"{want} rows on the event topic", 600, alive=self.dead)
        assert self.connector.poll() is None, "the connector ended before the fault: make the file bigger"
        return published(self.world.bootstrap, HOSPITALIZATION)

    def fault_begins(self) -> float:
        self.logs = LogWindow(self.logs.paths, self.logs.bare)
        self.progress.start()
        return time.monotonic()

    def finish(self, timeout: float = 900) -> dict[str, Any]:
        """The connector's summary once it ended; every row read and published once, none rejected."""
        code = self.connector.wait(timeout=timeout)
        log = self.connector_log.read_text(errors="replace")
        assert code == 0, f"the connector failed ({code}): {log[-3000:]}"
        summary: dict[str, Any] = json.loads(self.connector_out.read_text())
        assert (summary["read"], summary["published"], summary["rejected"]) == (self.rows, self.rows, 0), summary
        return summary

    def counts(self) -> tuple[int, int, int, int]:
        """(distinct events, event records, distinct household alerts on the topic, alerts in the case DB), after
        asserting each is exact: every event once, every expected alert in the case DB once."""
        world = self.world
        events = events_by_id(world.bootstrap, HOSPITALIZATION)
        assert len(events) == self.rows and set(events.values()) == {1}, (
            f"{len(events)} distinct events, {sum(events.values())} records (expected {self.rows} once each)")

        def judged() -> bool:
            household, _ = alerts_on_topics(world.bootstrap, self.prefix)
            return len(household) >= self.alerting
        wait_for(judged, f"{self.alerting} household alerts on the topic", 900, alive=self.dead)
        world.world.wait_monitor_settled(APP, self.monitor, timeout=600)
        wait_for(lambda: casefeed_caught_up(world.bootstrap), "the case feed at the end of the alert topics", 600,
                 alive=self.dead)
        household, regional = alerts_on_topics(world.bootstrap, self.prefix)
        cases, in_db, regional_in_db = case_alert_ids(world.case_db, self.prefix)
        assert len(household) == self.alerting, f"{len(household)} distinct household alerts, expected {self.alerting}"
        assert set(in_db) == set(household) and set(in_db.values()) == {1}, "the case DB's evidence differs"
        assert cases == HOUSEHOLDS
        assert set(regional_in_db) == set(regional) and set(regional_in_db.values()) <= {1}
        return len(events), sum(events.values()), len(household), len(in_db)

    def what_they_did(self, fault_at: float, fault_end: float) -> str:
        self.progress.stop()
        said = [f"{name}: {self.progress.report(fault_at, fault_end, name)}; {self.logs.summary(name)}"
                for name in ("monitor", "case feed")]
        said.append(f"connector: {self.logs.summary('connector')}")
        return "\n  ".join(said)

    def stop_cleanly(self) -> None:
        assert self.monitor.alive and self.casefeed.alive, self.dead()
        assert_stops_cleanly(self.monitor, "the monitor")
        assert_stops_cleanly(self.casefeed, "the case feed")


def test_a_broker_frozen_for_30_s_under_load_loses_and_repeats_nothing(tmp_path: Path) -> None:
    world = _start(tmp_path)
    try:
        run = Run(world, "FRZ")
        at_fault = run.wait_published(0.2)
        victim = world.cluster.busiest_leader([HOSPITALIZATION])
        led = sum(1 for leader in world.cluster.leaders(HOSPITALIZATION).values() if leader == victim)
        fault_at = run.fault_begins()
        world.cluster.freeze(victim)
        try:
            time.sleep(FREEZE_S / 3)  # sleep-ok: the fault itself (the node frozen 30 s)
            status = world.world.cli("kafka", "status")  # what the operator sees of a frozen node
            time.sleep(max(0.0, fault_at + FREEZE_S - time.monotonic()))  # sleep-ok: the rest of the 30 s fault
        finally:
            world.cluster.thaw(victim)
        thawed = time.monotonic()
        assert f"node {victim} on 127.0.0.1:{FIRST_PORT + 2 * (victim - 1)}: running" in status, status
        assert "but not answering" in status, status
        world.cluster.wait_in_sync([HOSPITALIZATION, ALERTS_HOUSEHOLD])  # the thawed node back in every ISR
        in_sync = time.monotonic() - thawed
        summary = run.finish()
        connector_done = time.monotonic() - fault_at
        events, records, household, in_db = run.counts()
        all_done = time.monotonic() - fault_at
        print(f"\nfault: SIGSTOP node {victim} of 3 (leader of {led} event partitions) for {thawed - fault_at:.1f} "
              f"s with {at_fault} rows on the topic | rows in {summary['read']} | events {events} distinct, "
              f"{records} records | household alerts expected {run.alerting}, {household} distinct on the topic, "
              f"{in_db} in the case DB | node back in every ISR {in_sync:.0f} s after the thaw; connector done "
              f"{connector_done:.0f} s, every alert judged and in the case DB {all_done:.0f} s after the freeze "
              f"began\n  {run.what_they_did(fault_at, thawed)}\n  kafka status while frozen:\n  {status}")
        run.stop_cleanly()
    finally:
        world.stop()


def _mount_tmpfs(where: Path, megabytes: int) -> None:
    """A tmpfs of `megabytes` on `where`, or skip the test saying why it cannot be mounted here."""
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("the disk-full test mounts a tmpfs: it needs root and `mount` (not permitted here)")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip() or done.returncode}")


def _unmount(where: Path) -> None:
    if subprocess.run(["mountpoint", "-q", str(where)]).returncode == 0:
        done = subprocess.run(["umount", str(where)], capture_output=True, text=True)
        if done.returncode != 0:  # a process still holds a file there: lazily, once it lets go
            subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(where: Path, leave: int) -> Path:
    """A ballast file taking all but `leave` bytes of the file system at `where`."""
    ballast = where / "ballast"
    chunk = b"\0" * (1 << 20)
    with open(ballast, "wb") as f:
        while (free := shutil.disk_usage(where).free) > leave:
            try:
                f.write(chunk[: min(len(chunk), free - leave)])
                f.flush()
            except OSError:  # the broker's writes got there first: full already
                break
    return ballast


def test_a_brokers_disk_full_stops_it_clearly_and_loses_nothing_once_space_returns(tmp_path: Path) -> None:
    log_dir = tmp_path / "kafka" / f"node-{DISK_NODE}" / "logs"  # kafka_cluster's layout: <data>/node-<i>/logs
    _mount_tmpfs(log_dir, TMPFS_MB)
    world: ClusterWorld | None = None
    try:
        world = _start(tmp_path)
        node = world.cluster.node(DISK_NODE)
        assert node.layout.log_dir == log_dir
        run = Run(world, "DSK")
        at_fault = run.wait_published(0.2)
        pid = node.pid()
        fault_at = run.fault_begins()
        ballast = _fill(log_dir, LEFT_FREE)
        # the broker's own writes take the last bytes; Kafka takes its only log dir offline and stops
        wait_for(lambda: node.pid() is None, f"node {DISK_NODE} to stop on its full disk", 300, alive=run.dead)
        stopped = time.monotonic() - fault_at
        broker_log = node.broker_log.read_text(errors="replace")
        assert "No space left on device" in broker_log, broker_log[-3000:]
        said = [line for line in broker_log.splitlines()
                if " ERROR " in line and ("Error while appending" in line or "Shutdown broker" in line)]
        assert said and "Shutdown broker because all log dirs" in said[-1], said
        status = world.world.cli("kafka", "status")
        assert f"node {DISK_NODE} on {node.address}: not running" in status, status
        assert "its last run ended on: " in status and f"its log dir {log_dir} is " in status, status

        summary = run.finish()  # on nodes 1 and 3: two in-sync replicas of three, min.insync.replicas 2
        connector_done = time.monotonic() - fault_at

        ballast.unlink()  # space returns
        restarted_at = time.monotonic()
        assert world.cluster.start(DISK_NODE) != pid
        world.cluster.wait_in_sync([HOSPITALIZATION, ALERTS_HOUSEHOLD], timeout=300)
        caught_up = time.monotonic() - restarted_at
        # the runbook's check (docs/runbook.md, procedure 11): no partition short of a replica
        assert world.world.cli("kafka", "tool", "kafka-topics", "--describe", "--under-replicated-partitions",
                               env={"POVWATCH_BOOTSTRAP": world.bootstrap}).strip() == ""
        events, records, household, in_db = run.counts()
        after = world.world.cli("kafka", "status")
        assert f"node {DISK_NODE} on {node.address}: running" in after and "full (" not in after, after
        print(f"\nfault: node {DISK_NODE}'s log dir ({TMPFS_MB} MB tmpfs) filled with {at_fault} rows on the "
              f"topic; the node stopped {stopped:.1f} s later | rows in {summary['read']} | events {events} "
              f"distinct, {records} records | household alerts expected {run.alerting}, {household} distinct on "
              f"the topic, {in_db} in the case DB | connector done {connector_done:.0f} s after the fill, node "
              f"{DISK_NODE} restarted and in sync {caught_up:.0f} s after the ballast went\n"
              f"  {run.what_they_did(fault_at, restarted_at)}\n  broker log:\n  "
              + "\n  ".join(dict.fromkeys([said[0], said[-1]]))
              + f"\n  kafka status:\n  {status}")
        run.stop_cleanly()
    finally:
        try:
            if world is not None:
                world.stop()
        finally:
            _unmount(log_dir)
