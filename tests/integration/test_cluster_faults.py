"""A cluster of three KRaft brokers that loses nothing (docs/cluster.md), on ports of this module's own
(POVWATCH_TEST_BROKER_PORT + 990 to + 995; the services' /metrics + 996 and + 997): each test starts its own
cluster and stops it, so they run one after the other.

  * the cluster itself: `povwatch kafka up --brokers 3`, every topic with replication factor 3 and
    min.insync.replicas 2, `status` and `down` finding the cluster's three nodes;
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plumbing.kafka_cluster import Cluster
from plumbing.kafka_io import project_topics
from plumbing.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092"))
FIRST_PORT = BASE + 990  # nodes on + 990, + 992, + 994; controllers one above each
MONITOR_METRICS = BASE + 996
CASEFEED_METRICS = BASE + 997


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
        assert all(f"node {n.node_id} on {n.address}: running (pid {n.pid()})" in status for n in cluster.nodes)
        assert "stopped nodes 1, 2, 3" in _cli(env, "kafka", "down")
        assert [node.pid() for node in cluster.nodes] == [None, None, None]
        assert _cli(env, "kafka", "status").startswith("cluster of 3 brokers, 0 running")
    finally:
        cluster.down()
