"""A local Kafka cluster of N KRaft nodes on loopback (`povwatch kafka up --brokers 3`), and the handles the fault
tests use to kill, freeze and restart one node of it.

Every node is a combined broker and controller (`process.roles=broker,controller`); the N controllers form the
KRaft quorum (static `controller.quorum.voters`), so a cluster of three keeps working with one node lost. Layout,
from the first address of POVWATCH_BOOTSTRAP (port P) and POVWATCH_KAFKA_DATA (D):

    node i (1..N)   client port P + 2(i-1), controller port P + 2(i-1) + 1, data in D/node-<i>/
                    (server.properties, logs/, broker.pid, broker.log: one plumbing/kafka_local.py layout each)
    D/cluster.id    the cluster id every node was formatted with

A single broker (N = 1) keeps plumbing/kafka_local.py's layout (data in D itself, no node-<i>), so `kafka up`
without --brokers is what it always was. Replication follows the number of nodes (kafka_local.replication_for):
default.replication.factor, offsets and transaction logs min(3, N); min.insync.replicas 2 from three nodes on,
else 1. Topics made by plumbing/kafka_io.ensure_topics take the same replication factor.

    Cluster(settings, brokers)  .up() .down() .status() .bootstrap .nodes
                                .kill(i) .stop(i) .start(i) .freeze(i) .thaw(i)
                                .leaders(topic) .wait_in_sync(topics)
    up(settings, brokers=1, secure=False) / down(settings) / status(settings)   the `povwatch kafka` actions

Synchronous like kafka_local (asyncio.run inside): not for use inside a running event loop.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from plumbing import kafka_diagnosis, kafka_local, kafka_secure_broker, kafka_security
from plumbing.kafka_io import AdminClient
from plumbing.settings import Settings
from schemas.errors import BrokerUnavailable, ConfigError

__all__ = ["Cluster", "Node", "up", "down", "status", "node_dirs", "PORT_STEP"]

PORT_STEP = 2  # each node takes its client port and the controller port above it
NO_LEADER = -1


def node_dirs(data: Path) -> list[Path]:
    """The node directories (node-<i>) of a cluster made in `data`, by node id; empty for a single broker."""
    found = [p for p in data.glob("node-*") if p.name.removeprefix("node-").isdigit() and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("node-")))


def _cluster_id(data: Path) -> str:
    """The cluster id in D/cluster.id, made once (Kafka's form: a random UUID in URL-safe base64, no padding)."""
    path = data / "cluster.id"
    try:
        return path.read_text().strip()
    except OSError:
        pass
    made = ""
    while not made or made.startswith("-"):  # Kafka never hands out an id a command line would take for an option
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    data.mkdir(parents=True, exist_ok=True)
    path.write_text(made + "\n")
    return made


@dataclass(frozen=True)
class Node:
    """One node of the cluster: broker and controller."""

    node_id: int
    layout: kafka_local._Layout

    @property
    def port(self) -> int:
        return self.layout.port

    @property
    def controller_port(self) -> int:
        return self.layout.controller_port

    @property
    def data(self) -> Path:
        return self.layout.data

    @property
    def address(self) -> str:
        return self.layout.address

    @property
    def broker_log(self) -> Path:
        return self.layout.broker_log

    def pid(self) -> int | None:
        """The node's broker process, if it runs (a frozen one too)."""
        return kafka_local._our_pid(self.layout)


class Cluster:
    """N nodes from `settings` (the first bootstrap address gives node 1's port; kafka_data holds node-<i>)."""

    def __init__(self, settings: Settings, brokers: int = 3, *, secure: bool = False) -> None:
        if brokers < 2:
            raise ConfigError(f"a cluster has 2 brokers or more, not {brokers} (one broker: kafka_local)")
        self.settings = settings
        self.secure = secure
        base = kafka_local._layout(settings)
        voters = ",".join(f"{i}@127.0.0.1:{base.port + PORT_STEP * (i - 1) + 1}" for i in range(1, brokers + 1))
        names = tuple(f"broker-{i}" for i in range(1, brokers + 1))
        self.nodes = [
            Node(i, replace(base, data=base.data / f"node-{i}", port=base.port + PORT_STEP * (i - 1),
                            controller_port=base.port + PORT_STEP * (i - 1) + 1, node_id=i, voters=voters,
                            brokers=names))
            for i in range(1, brokers + 1)]
        self.data = base.data

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client reaches the cluster as long as one of them answers."""
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> Node:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ConfigError(f"no node {node_id} in this cluster of {len(self.nodes)}")

    # -- the whole cluster --------------------------------------------------------------------------------------

    def _security(self) -> kafka_security.ClientSecurity:
        return kafka_local._probe_as(self.settings, self.nodes[0].layout)

    def up(self) -> str:
        """Start every node not running (formatting new ones with the cluster's id) and wait until each answers.
        Idempotent."""
        java = kafka_local.require_java()
        kafka_local._ensure_jars(self.nodes[0].layout.cache)
        cluster_id = _cluster_id(self.data)
        started: list[int] = []
        for node in self.nodes:
            if node.pid() is not None:
                continue
            node.layout.pid_file.unlink(missing_ok=True)
            kafka_local._check_ports_free(node.layout)
            tls = None
            if self.secure:
                tls = kafka_secure_broker.broker_tls(Path(self.settings.pki_dir).resolve(), f"broker-{node.node_id}")
            node.layout.data.mkdir(parents=True, exist_ok=True)
            kafka_local._prepare_data(java, node.layout, tls, cluster_id)
        launched: dict[int, subprocess.Popen[bytes]] = {}
        for node in self.nodes:  # all at once: no node answers before the quorum has a majority
            if node.pid() is None:
                launched[node.node_id] = kafka_local._launch(java, node.layout)
                started.append(launched[node.node_id].pid)
        self._wait_answering(self.nodes, launched)
        how = "secured (TLS, client certificates, ACLs)" if self.secure else "plaintext"
        replication, min_isr = kafka_local.replication_for(len(self.nodes))
        pids = ", ".join(str(node.pid()) for node in self.nodes)
        state = f"started {len(started)} of them" if started else "already running"
        return (f"Kafka {self.nodes[0].layout.version} cluster of {len(self.nodes)} brokers ({state}; pids {pids}), "
                f"{how}, replication factor {replication}, min.insync.replicas {min_isr}; "
                f"POVWATCH_BOOTSTRAP={self.bootstrap}; data in {self.data}")

    def _wait_answering(self, nodes: Iterable[Node], launched: dict[int, subprocess.Popen[bytes]]) -> None:
        """Until each node answers. A node just launched is watched through its Popen: until the JVM has
        exec'd, its /proc cmdline is still Python's, and node.pid() would not recognise it yet."""
        with kafka_security.acting_as(self._security()):
            for node in nodes:
                proc = launched.get(node.node_id)
                pid = proc.pid if proc is not None else node.pid()
                if pid is None:
                    raise BrokerUnavailable(f"node {node.node_id} is not running")
                kafka_local._wait_until_answers(node.layout, proc or kafka_local._started.get(pid), pid)

    def down(self) -> str:
        """Stop every node: SIGTERM to all at once (one by one, the last ones would wait for a quorum already
        gone), SIGKILL to those still running 30 s later."""
        pids = {node.node_id: node.pid() for node in self.nodes}
        for pid in pids.values():
            if pid is not None:
                for sig in (signal.SIGCONT, signal.SIGTERM):  # a frozen node would never act on SIGTERM
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        deadline = time.monotonic() + kafka_local.STOP_TIMEOUT_S
        killed: list[int] = []
        while running := [node for node in self.nodes if node.pid() is not None]:
            if time.monotonic() > deadline:
                for node in running:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pids[node.node_id] or -1, signal.SIGKILL)
                    killed.append(node.node_id)
                deadline = float("inf")
            time.sleep(0.2)
        for node in self.nodes:
            node.layout.pid_file.unlink(missing_ok=True)
        stopped = [str(i) for i, pid in pids.items() if pid is not None and i not in killed]
        parts = [f"stopped node{'s' if len(stopped) > 1 else ''} {', '.join(stopped)}" if stopped else "",
                 f"killed {', '.join(map(str, killed))} (no exit {kafka_local.STOP_TIMEOUT_S:.0f} s after SIGTERM)"
                 if killed else ""]
        said = "; ".join(part for part in parts if part) or "not running"
        return f"Kafka cluster of {len(self.nodes)} brokers in {self.data}: {said}"

    def status(self) -> str:
        lines = []
        with kafka_security.acting_as(self._security()):
            for node in self.nodes:
                pid = node.pid()
                disk = kafka_diagnosis.disk_note(node.layout.log_dir)
                if pid is None:
                    crash = _read_crash(node)
                    lines.append(f"node {node.node_id} on {node.address}: not running"
                                 + (f"; its last run ended on: {crash}" if crash else "")
                                 + (f"; {disk}" if disk else ""))
                    continue
                answers = kafka_local.broker_answers(node.address, timeout=2.0)
                lines.append(f"node {node.node_id} on {node.address}: running (pid {pid})"
                             + ("" if answers else " but not answering") + (f"; {disk}" if disk else ""))
        running = sum(1 for node in self.nodes if node.pid() is not None)
        return (f"cluster of {len(self.nodes)} brokers, {running} running, Kafka {self.nodes[0].layout.version} "
                f"(POVWATCH_BOOTSTRAP={self.bootstrap})\n" + "\n".join(lines))

    # -- one node -------------------------------------------------------------------------------------------------

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> int:
        """Send `sig` (SIGKILL: a crash) to one node's broker and, for SIGKILL, wait until it is gone. Its pid."""
        node = self.node(node_id)
        pid = node.pid()
        if pid is None:
            raise ConfigError(f"node {node_id} is not running")
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 30
            while node.pid() is not None:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"node {node_id} (pid {pid}) still runs 30 s after SIGKILL")
                time.sleep(0.1)
        return pid

    def stop(self, node_id: int) -> str:
        """A clean stop of one node (SIGTERM: it hands its partitions over first)."""
        return kafka_local._stop_node(self.node(node_id).layout)

    def freeze(self, node_id: int) -> int:
        """SIGSTOP: the node's process stays, answers nothing (a stalled machine), until thaw."""
        return self.kill(node_id, signal.SIGSTOP)

    def thaw(self, node_id: int) -> int:
        return self.kill(node_id, signal.SIGCONT)

    def start(self, node_id: int) -> int:
        """Start one stopped or killed node again on its data (no format) and wait until it answers. Its pid."""
        node = self.node(node_id)
        launched: dict[int, subprocess.Popen[bytes]] = {}
        if node.pid() is None:
            java = kafka_local.require_java()
            kafka_local._check_ports_free(node.layout)
            launched[node_id] = kafka_local._launch(java, node.layout)
        self._wait_answering([node], launched)
        pid = node.pid()
        assert pid is not None, "a node that answers runs"
        return pid

    # -- partitions -------------------------------------------------------------------------------------------------

    def _metadata(self, topics: list[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Topic metadata from whichever node answers (a client's metadata can still name a node just killed:
        asked again until one answers, within `timeout`)."""
        async def ask() -> list[dict[str, Any]]:
            admin = AdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000,
                                        **kafka_security.client_options())
            try:
                await admin.start()
                found: list[dict[str, Any]] = await admin.describe_topics(topics)
                return found
            finally:
                await admin.close()

        quiet = logging.getLogger("aiokafka")  # a node down is what the caller is looking at, not an error
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        deadline = time.monotonic() + timeout
        try:
            with kafka_security.acting_as(self._security()):
                while True:
                    try:
                        return asyncio.run(asyncio.wait_for(ask(), 10.0))
                    except (KafkaError, OSError, TimeoutError) as exc:
                        if time.monotonic() > deadline:
                            raise BrokerUnavailable(f"no node of {self.bootstrap} answers a metadata request: "
                                                    f"{exc or type(exc).__name__}") from None
                    time.sleep(0.3)
        finally:
            quiet.setLevel(level)

    def partitions(self, topic: str) -> dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]:
        """partition -> (leader node id or -1, replicas, in-sync replicas), as the cluster's metadata says now."""
        for entry in self._metadata([topic]):
            if entry["topic"] == topic:
                if not entry["partitions"]:
                    raise BrokerUnavailable(f"topic {topic} has no partitions on {self.bootstrap} (missing?)")
                return {p["partition"]: (p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
                        for p in entry["partitions"]}
        raise BrokerUnavailable(f"topic {topic} is not on {self.bootstrap}")

    def leaders(self, topic: str) -> dict[int, int]:
        """partition -> node id of its leader (-1: none now)."""
        return {partition: leader for partition, (leader, _, _) in self.partitions(topic).items()}

    def leader_of(self, topic: str, partition: int = 0) -> int:
        return self.leaders(topic)[partition]

    def busiest_leader(self, topics: Iterable[str]) -> int:
        """The node that leads most partitions of `topics` (the lowest id among equals)."""
        counts = Counter(leader for topic in topics for leader in self.leaders(topic).values() if leader >= 0)
        if not counts:
            raise BrokerUnavailable("no partition of those topics has a leader")
        return min(counts, key=lambda node_id: (-counts[node_id], node_id))

    def wait_in_sync(self, topics: Iterable[str], timeout: float = 120.0) -> None:
        """Until every partition of `topics` has a leader and all its replicas in sync (after a node came back)."""
        names = list(topics)
        deadline = time.monotonic() + timeout
        lagging: list[str] = []
        while time.monotonic() < deadline:
            lagging = [f"{topic}[{p}]" for topic in names for p, (leader, replicas, isr) in
                       self.partitions(topic).items() if leader == NO_LEADER or set(isr) != set(replicas)]
            if not lagging:
                return
            time.sleep(0.5)
        raise BrokerUnavailable(f"partitions not in sync after {timeout:.0f} s: {', '.join(lagging[:10])}")


def _read_crash(node: Node) -> str | None:
    """How the node's last run ended, if not cleanly (kafka_diagnosis.crash_line of its broker.log)."""
    try:
        return kafka_diagnosis.crash_line(node.broker_log.read_text(errors="replace"))
    except OSError:
        return None


def _existing(settings: Settings) -> Cluster | None:
    nodes = node_dirs(kafka_local._layout(settings).data)
    if not nodes:
        return None
    secure = False
    try:
        secure = kafka_secure_broker.is_secure((nodes[0] / "server.properties").read_text())
    except OSError:
        pass
    return Cluster(settings, len(nodes), secure=secure)


def up(settings: Settings, *, brokers: int = 1, secure: bool = False) -> str:
    """`povwatch kafka up [--brokers N] [--secure]`: one broker (kafka_local) or a cluster of N."""
    if brokers < 1:
        raise ConfigError(f"--brokers must be 1 or more, not {brokers}")
    existing = _existing(settings)
    if existing is not None and len(existing.nodes) != brokers:
        raise ConfigError(f"{existing.data} holds a cluster of {len(existing.nodes)} brokers, not {brokers}; "
                          f"use --brokers {len(existing.nodes)} or another POVWATCH_KAFKA_DATA")
    if brokers == 1:
        return kafka_local.up(settings, secure=secure)
    if kafka_local._our_pid(kafka_local._layout(settings)) is not None:
        raise ConfigError(f"a single broker runs from {kafka_local._layout(settings).data}; stop it "
                          "(`povwatch kafka down`) or use another POVWATCH_KAFKA_DATA for a cluster")
    return Cluster(settings, brokers, secure=secure).up()


def down(settings: Settings) -> str:
    existing = _existing(settings)
    return kafka_local.down(settings) if existing is None else existing.down()


def status(settings: Settings) -> str:
    existing = _existing(settings)
    return kafka_local.status(settings) if existing is None else existing.status()
