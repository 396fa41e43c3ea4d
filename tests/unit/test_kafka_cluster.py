"""The local cluster's layout and configuration (plumbing/kafka_cluster.py), without starting a broker: ports and
data dirs per node, the KRaft quorum every node names, replication derived from the number of brokers, and the
refusals of `povwatch kafka up --brokers N` that need no Java."""
from __future__ import annotations

from pathlib import Path

import pytest

from plumbing import kafka_cluster, kafka_local, kafka_secure_broker
from plumbing.settings import Settings
from schemas.errors import ConfigError


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_three_nodes_take_two_ports_each_from_the_first_address(tmp_path: Path) -> None:
    cluster = kafka_cluster.Cluster(Settings(bootstrap="127.0.0.1:21082", kafka_data=tmp_path), 3)
    assert [(n.node_id, n.port, n.controller_port, n.data) for n in cluster.nodes] == [
        (1, 21082, 21083, tmp_path.resolve() / "node-1"),
        (2, 21084, 21085, tmp_path.resolve() / "node-2"),
        (3, 21086, 21087, tmp_path.resolve() / "node-3"),
    ]
    assert cluster.bootstrap == "127.0.0.1:21082,127.0.0.1:21084,127.0.0.1:21086"
    # the bootstrap list a client of the cluster is given names the same cluster again
    again = kafka_cluster.Cluster(Settings(bootstrap=cluster.bootstrap, kafka_data=tmp_path), 3)
    assert again.bootstrap == cluster.bootstrap


def test_every_node_is_broker_and_controller_of_one_quorum_with_rf3_and_min_isr2(tmp_path: Path) -> None:
    cluster = kafka_cluster.Cluster(Settings(bootstrap="127.0.0.1:21082", kafka_data=tmp_path), 3)
    rendered = [_properties(kafka_local.server_properties(node.layout)) for node in cluster.nodes]
    voters = "1@127.0.0.1:21083,2@127.0.0.1:21085,3@127.0.0.1:21087"
    for node, props in zip(cluster.nodes, rendered, strict=True):
        assert props["node.id"] == str(node.node_id)
        assert props["process.roles"] == "broker,controller"
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        assert props["log.dirs"] == str(node.data / "logs")
        assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("3", "2")
        assert (props["offsets.topic.replication.factor"], props["transaction.state.log.replication.factor"],
                props["transaction.state.log.min.isr"]) == ("3", "3", "2")
        assert props["unclean.leader.election.enable"] == "false"


def test_a_single_broker_keeps_its_layout_and_replication_one(tmp_path: Path) -> None:
    settings = Settings(bootstrap="127.0.0.1:21082", kafka_data=tmp_path)
    props = _properties(kafka_local.server_properties(kafka_local._layout(settings)))
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:21083"
    assert props["log.dirs"] == str(tmp_path.resolve() / "logs")
    assert (props["default.replication.factor"], props["min.insync.replicas"],
            props["offsets.topic.replication.factor"], props["transaction.state.log.min.isr"]) == ("1", "1", "1", "1")


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_replication_follows_the_broker_count(brokers: int, expected: tuple[int, int]) -> None:
    assert kafka_local.replication_for(brokers) == expected


def test_a_secured_cluster_names_every_broker_a_super_user(tmp_path: Path) -> None:
    cluster = kafka_cluster.Cluster(Settings(bootstrap="127.0.0.1:21082", kafka_data=tmp_path), 3, secure=True)
    tls = kafka_secure_broker.BrokerTls("broker-2", tmp_path / "ca.pem", tmp_path / "broker-2.keystore.pem")
    props = _properties(kafka_secure_broker.secure_properties(
        kafka_local.server_properties(cluster.nodes[1].layout), tls, cluster.nodes[1].layout.brokers))
    assert props["super.users"] == "User:admin;User:broker-1;User:broker-2;User:broker-3"
    assert props["listeners"] == "SSL://127.0.0.1:21084,CONTROLLER://127.0.0.1:21085"
    assert props["listener.security.protocol.map"] == "SSL:SSL,CONTROLLER:SSL"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:21083,2@127.0.0.1:21085,3@127.0.0.1:21087"


def test_up_refuses_a_broker_count_other_than_the_data_dirs_cluster(tmp_path: Path) -> None:
    for i in (1, 2, 3):
        (tmp_path / f"node-{i}").mkdir()
    settings = Settings(bootstrap="127.0.0.1:21082", kafka_data=tmp_path)
    with pytest.raises(ConfigError, match=r"holds a cluster of 3 brokers, not 1; use --brokers 3"):
        kafka_cluster.up(settings)
    with pytest.raises(ConfigError, match=r"--brokers must be 1 or more, not 0"):
        kafka_cluster.up(settings, brokers=0)
    # down and status find the cluster without being told its size
    assert kafka_cluster.status(settings).startswith("cluster of 3 brokers, 0 running")
    assert kafka_cluster.down(settings).endswith("not running")


def test_a_cluster_has_two_nodes_or_more(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a cluster has 2 brokers or more, not 1"):
        kafka_cluster.Cluster(Settings(bootstrap="127.0.0.1:21082", kafka_data=tmp_path), 1)
