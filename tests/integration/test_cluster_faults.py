"""A cluster of three KRaft brokers that loses nothing (docs/cluster.md), on ports of this module's own
(POVWATCH_TEST_BROKER_PORT + 990 to + 995; the services' /metrics + 996 and + 997): each test starts its own
cluster and stops it, so they run one after the other.

  * the cluster itself: `povwatch kafka up --brokers 3`, every topic with replication factor 3 and
    min.insync.replicas 2, `status` and `down` finding the cluster's three nodes;
  * one broker SIGKILLed in the middle of a 100,000-row connector run, the monitor and the case feed running:
    every event on its topic once by event_id, every expected alert once in the case DB;
  * the leader of the registry partitions SIGKILLed as the monitor starts: the monitor becomes ready and judges
    every event, exactly the expected alerts.

Counts in and out of each are in docs/cluster.md.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from plumbing import kafka_secure_broker, pki
from plumbing.kafka_cluster import Cluster
from plumbing.kafka_io import ensure_topics, missing_topics, project_topics
from plumbing.kafka_security import acting_as
from plumbing.processes import ChildProcess, metric, wait_until
from plumbing.settings import Settings
from schemas.topics import ALERTS_HOUSEHOLD, REGISTRY_HOUSEHOLD_STATUS, REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS, TopicSpec
from tests.integration.cluster_world import (
    APP,
    FIRST_PORT,
    HOSPITALIZATION,
    MONITOR_METRICS,
    ClusterWorld,
    alerts_on_topics,
    case_alert_ids,
    casefeed_caught_up,
    events_by_id,
    published,
    stays_rows,
    wait_for,
    write_world_files,
)
from tests.integration.ops_world import households, roster_file
from tests.integration.runbook_world import assert_stops_cleanly

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"povwatch {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def test_kafka_up_brokers_3_makes_a_cluster_whose_topics_have_three_replicas(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    env = {**os.environ, "POVWATCH_BOOTSTRAP": f"127.0.0.1:{FIRST_PORT}", "POVWATCH_KAFKA_DATA": str(data)}
    cluster = Cluster(Settings(bootstrap=f"127.0.0.1:{FIRST_PORT}", kafka_data=data), 3)
    try:
        said = _cli(env, "kafka", "up", "--brokers", "3")
        assert "cluster of 3 brokers (started 3 of them" in said
        assert f"replication factor 3, min.insync.replicas 2; POVWATCH_BOOTSTRAP={cluster.bootstrap}" in said
        assert "already running" in _cli(env, "kafka", "up", "--brokers", "3")
        pids = [node.pid() for node in cluster.nodes]
        assert all(pids) and len(set(pids)) == 3
        _cli({**env, "POVWATCH_BOOTSTRAP": cluster.bootstrap}, "topics", "ensure")
        for spec in project_topics():
            for partition, (leader, replicas, isr) in cluster.partitions(spec.name).items():
                assert leader in (1, 2, 3), f"{spec.name}[{partition}] has no leader"
                assert sorted(replicas) == [1, 2, 3] and sorted(isr) == [1, 2, 3], (spec.name, partition)
        configs = _cli({**env, "POVWATCH_BOOTSTRAP": cluster.bootstrap}, "kafka", "tool", "kafka-configs",
                       "--describe", "--entity-type", "topics", "--entity-name", "registry.persons")
        assert "cleanup.policy=compact" in configs and "min.insync.replicas=2" in configs, configs
        status = _cli(env, "kafka", "status")
        assert status.startswith("cluster of 3 brokers, 3 running")
        assert all(f"node {n.node_id}" + f" on {n.address}: running (pid {n.pid()})\n" in status + "\n"
                   for n in cluster.nodes)
        # a node lost: in the seconds before the controller fences it, the cluster's metadata still lists it;
        # admin calls (every client's start: topics checked) and `kafka status` ask the others
        cluster.kill(3)
        for _ in range(12):
            assert asyncio.run(missing_topics(cluster.bootstrap, [HOSPITALIZATION])) == []
        status = _cli(env, "kafka", "status")
        assert status.startswith("cluster of 3 brokers, 2 running")
        assert all(f"node {n.node_id} on {n.address}: running (pid {n.pid()})\n" in status for n in cluster.nodes[:2])
        assert "node 3 on 127.0.0.1:" in status and status.rstrip().endswith("not running")
        assert "(started 1 of them" in _cli(env, "kafka", "up", "--brokers", "3")  # the node down, on its data
        cluster.wait_in_sync([HOSPITALIZATION])
        assert "stopped nodes 1, 2, 3" in _cli(env, "kafka", "down")
        assert [node.pid() for node in cluster.nodes] == [None, None, None]
        assert _cli(env, "kafka", "status").startswith("cluster of 3 brokers, 0 running")
    finally:
        cluster.down()



def test_a_secured_cluster_replicates_over_tls_with_every_broker_a_super_user(tmp_path: Path) -> None:
    """`kafka up --brokers 3 --secure`: the brokers replicate to each other and elect controllers over TLS (each
    with its own certificate); the admin creates the topics with three replicas; a node lost and back."""
    settings = Settings(bootstrap=f"127.0.0.1:{FIRST_PORT}", kafka_data=tmp_path / "kafka", pki_dir=tmp_path / "pki")
    pki.init(settings.pki_dir)
    env = {**os.environ, "POVWATCH_BOOTSTRAP": f"127.0.0.1:{FIRST_PORT}",
           "POVWATCH_KAFKA_DATA": str(settings.kafka_data), "POVWATCH_PKI_DIR": str(settings.pki_dir)}
    cluster = Cluster(settings, 3, secure=True)
    try:
        said = _cli(env, "kafka", "up", "--brokers", "3", "--secure")
        assert "cluster of 3 brokers (started 3 of them" in said and "secured (TLS" in said
        with acting_as(kafka_secure_broker.admin_security(settings)):
            asyncio.run(ensure_topics(cluster.bootstrap, 3, [TopicSpec(HOSPITALIZATION)]))
        for partition, (leader, replicas, isr) in cluster.partitions(HOSPITALIZATION).items():
            assert leader in (1, 2, 3) and sorted(replicas) == sorted(isr) == [1, 2, 3], partition
        victim = cluster.leader_of(HOSPITALIZATION, 0)
        cluster.kill(victim)
        wait_for(lambda: victim not in cluster.leaders(HOSPITALIZATION).values(), "new leaders", 120)
        cluster.start(victim)
        cluster.wait_in_sync([HOSPITALIZATION])
        assert "running" in _cli(env, "kafka", "status").splitlines()[victim]
    finally:
        cluster.down()

def _dead(*children: tuple[str, ChildProcess]) -> Callable[[], str]:
    def which() -> str:
        return "; ".join(f"{name} exited ({c.proc.returncode}):\n{c.tail(25)}" for name, c in children
                         if not c.alive)
    return which


def test_a_broker_killed_mid_run_loses_and_repeats_nothing(tmp_path: Path) -> None:
    world = ClusterWorld.start(tmp_path)
    try:
        roster, stays, rows, alerting = write_world_files(tmp_path, "KILL", 2000, per_person=25, alerting_every=25)
        assert (rows, alerting) == (100_000, 4_000)
        world.world.roster(roster, delta=False)
        monitor, casefeed = world.monitor(), world.casefeed()
        world.wait_monitor_ready(monitor)
        connector = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "connector", "run", "medical-security", "hospitalization",
             str(stays), "--json"], env={**os.environ, **world.world.env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        dead = _dead(("the monitor", monitor), ("the case feed", casefeed))
        # midway: about half of the rows acknowledged on the event topic
        wait_for(lambda: published(world.bootstrap, HOSPITALIZATION) >= rows // 2 or connector.poll() is not None,
                 "half of the rows on the event topic", 600, alive=dead)
        assert connector.poll() is None, "the connector ended before half of its rows were on the topic"
        at_kill = published(world.bootstrap, HOSPITALIZATION)
        victim = world.cluster.busiest_leader([HOSPITALIZATION])
        world.cluster.kill(victim)
        out, err = connector.communicate(timeout=900)
        assert connector.returncode == 0, f"the connector failed after node {victim} was killed: {err[-3000:]}"
        summary = json.loads(out)
        assert (summary["read"], summary["published"], summary["rejected"]) == (rows, rows, 0), summary

        events = events_by_id(world.bootstrap, HOSPITALIZATION)
        assert len(events) == rows and set(events.values()) == {1}, (
            f"{len(events)} distinct events, {sum(events.values())} records (expected {rows} once each)")

        def judged() -> bool:
            household, _ = alerts_on_topics(world.bootstrap, "KILL")
            return len(household) >= alerting
        wait_for(judged, f"{alerting} household alerts on the topic", 900, alive=dead)
        world.world.wait_monitor_settled(APP, monitor, timeout=600)
        wait_for(lambda: casefeed_caught_up(world.bootstrap), "the case feed at the end of the alert topics", 600,
                 alive=dead)
        household, regional = alerts_on_topics(world.bootstrap, "KILL")
        cases, in_db, regional_in_db = case_alert_ids(world.case_db, "KILL")
        assert len(household) == alerting, f"{len(household)} distinct household alerts, expected {alerting}"
        assert set(in_db) == set(household) and set(in_db.values()) == {1}, "the case DB's evidence differs"
        assert cases == 2000
        assert set(regional_in_db) == set(regional) and set(regional_in_db.values()) <= {1}

        # the killed node comes back and catches up; still every event once
        world.cluster.start(victim)
        world.cluster.wait_in_sync([HOSPITALIZATION, ALERTS_HOUSEHOLD])
        assert events_by_id(world.bootstrap, HOSPITALIZATION) == events
        print(f"fault: SIGKILL node {victim} of 3 with {at_kill} rows on the topic | rows in {rows} | events "
              f"{len(events)} distinct, {sum(events.values())} records | household alerts expected {alerting}, "
              f"{len(household)} distinct on the topic ({sum(household.values())} records), {len(in_db)} in the "
              f"case DB | regional {len(regional)} on the topic, {len(regional_in_db)} in the case DB")
        assert_stops_cleanly(monitor, "the monitor")
        assert_stops_cleanly(casefeed, "the case feed")
    finally:
        world.stop()


def test_the_registry_leader_killed_as_the_monitor_starts(tmp_path: Path) -> None:
    world = ClusterWorld.start(tmp_path)
    try:
        hhs = households("LEAD", 2000, members=2)
        world.world.roster(roster_file(tmp_path / "roster.csv", hhs), delta=False)
        before, alerting_before = stays_rows(hhs, per_person=2, alerting_every=2)
        (tmp_path / "before.csv").write_bytes(before)
        world.world.publish("medical-security", "hospitalization", tmp_path / "before.csv")
        registry = [REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS, REGISTRY_HOUSEHOLD_STATUS]
        victim = world.cluster.busiest_leader(registry)
        monitor = world.monitor()
        # as soon as the monitor's /metrics answers, before its registry is ready: kill the registry's leader
        samples = wait_until(MONITOR_METRICS, lambda s: True, timeout=120, child=monitor, what="/metrics")
        world.cluster.kill(victim)
        assert metric(samples, "povwatch_registry_ready") == 0
        casefeed = world.casefeed()
        dead = _dead(("the monitor", monitor), ("the case feed", casefeed))
        world.wait_monitor_ready(monitor, timeout=300)
        after, alerting_after = stays_rows(hhs, per_person=1, alerting_every=1, first=dt.date(2025, 3, 1))
        (tmp_path / "after.csv").write_bytes(after)
        world.world.publish("medical-security", "hospitalization", tmp_path / "after.csv")  # two brokers of three
        alerting = alerting_before + alerting_after
        assert (alerting_before, alerting_after) == (4000, 4000)

        def judged() -> bool:
            household, _ = alerts_on_topics(world.bootstrap, "LEAD")
            return len(household) >= alerting
        wait_for(judged, f"{alerting} household alerts on the topic", 900, alive=dead)
        world.world.wait_monitor_settled(APP, monitor, timeout=600)
        wait_for(lambda: casefeed_caught_up(world.bootstrap), "the case feed at the end of the alert topics", 600,
                 alive=dead)
        events = events_by_id(world.bootstrap, HOSPITALIZATION)
        household, regional = alerts_on_topics(world.bootstrap, "LEAD")
        cases, in_db, regional_in_db = case_alert_ids(world.case_db, "LEAD")
        assert len(events) == 12_000 and set(events.values()) == {1}
        assert len(household) == alerting, f"{len(household)} distinct household alerts, expected {alerting}"
        assert set(in_db) == set(household) and set(in_db.values()) == {1}, "the case DB's evidence differs"
        assert cases == 2000
        assert set(regional_in_db) == set(regional) and set(regional_in_db.values()) <= {1}
        print(f"fault: SIGKILL node {victim} of 3 (leader of most registry partitions) as the monitor started | "
              f"rows in {len(events)} | events {len(events)} distinct, {sum(events.values())} records | household "
              f"alerts expected {alerting}, {len(household)} distinct on the topic ({sum(household.values())} "
              f"records), {len(in_db)} in the case DB | regional {len(regional)} on the topic, "
              f"{len(regional_in_db)} in the case DB")
        world.cluster.start(victim)
        world.cluster.wait_in_sync([*registry, HOSPITALIZATION])
        assert_stops_cleanly(monitor, "the monitor")
        assert_stops_cleanly(casefeed, "the case feed")
    finally:
        world.stop()
