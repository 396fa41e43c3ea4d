"""The local Apache Kafka broker: one single-node KRaft broker per data directory, for development and tests.

Responsible for fetching the Kafka jars once per machine (Maven, into `settings.kafka_home/<version>/libs`:
the broker `kafka_2.13` and Kafka's command-line tools `kafka-tools`), writing the broker's configuration into
`settings.kafka_data`, formatting its storage once, and starting, checking and stopping the broker process.
It never touches a broker it did not start: a broker is "ours" only when the pid in `<data dir>/broker.pid`
runs `kafka.Kafka` with our server.properties.

    up(settings) / down(settings) / status(settings)  -> one-line message
    broker_answers(bootstrap, timeout)                  -> True when a Kafka broker answers a metadata request
    java_classpath(settings)                            -> (java, the cached jars' classpath), fetching them first

The cache is complete when `<version>/.complete` holds `cache_marker(version)`; a cache made with another
marker (an older set of artifacts) is completed on next use, without removing the jars a running broker reads.

These functions are synchronous (they use `asyncio.run`); do not call them from inside a running event loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.client import AIOKafkaClient

from plumbing import kafka_secure_broker, kafka_security
from plumbing.settings import Settings
from schemas.errors import BrokerUnavailable, ConfigError, EnvironmentProblem

__all__ = ["up", "down", "status", "broker_answers", "java_classpath", "cache_marker", "require_java"]

LOG4J_SLF4J_VERSION = "2.24.3"
# Bump CACHE_FORMAT whenever the fetched artifacts change (POM_TEMPLATE): caches with another marker are redone.
# 1: kafka_2.13 + log4j-slf4j-impl; 2: + kafka-tools (the command-line tools)
CACHE_FORMAT = 2
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MAVEN_TIMEOUT_S = 900.0

POM_TEMPLATE = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>povwatch.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2_TEMPLATE = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {broker_log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"""

# Kafka's command-line tools print their results on stdout; their own log (warnings and errors) goes to stderr,
# as with config/tools-log4j2.yaml of the Kafka distribution.
TOOLS_LOG4J2 = """\
status = warn
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
"""

SERVER_PROPERTIES_TEMPLATE = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={log_dir}
default.replication.factor={replication}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replication}
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms={group_delay_ms}
num.partitions=1
auto.create.topics.enable=false
"""


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`: 1 and 1 on a single broker, 2 and 1 on
    two, 3 and 2 from three on (a write acknowledged by acks=all is then on two brokers at least, and one broker
    may be lost without refusing writes)."""
    replication = min(3, max(1, brokers))
    return replication, 2 if replication >= 3 else 1


_started: dict[int, subprocess.Popen[bytes]] = {}  # brokers this process launched, kept so they can be reaped


@dataclass(frozen=True)
class _Cache:
    """The per-machine jar cache of one Kafka version: <kafka_home>/<version>."""

    version: str
    dist: Path  # pom.xml, libs/, tools-log4j2.properties, .complete

    @property
    def libs(self) -> Path:
        return self.dist / "libs"

    @property
    def complete(self) -> Path:
        return self.dist / ".complete"

    @property
    def tools_log4j2(self) -> Path:
        return self.dist / "tools-log4j2.properties"


@dataclass(frozen=True)
class _Layout:
    cache: _Cache
    data: Path  # absolute data dir: configs, pid file, logs
    port: int
    controller_port: int
    node_id: int = 1
    voters: str = ""  # controller.quorum.voters; empty: this node alone
    brokers: tuple[str, ...] = ()  # every broker's principal name of the cluster (secured); empty: this one's
    group_delay_ms: int = 0  # group.initial.rebalance.delay.ms (POVWATCH_KAFKA_GROUP_DELAY_MS)

    @property
    def version(self) -> str:
        return self.cache.version

    @property
    def libs(self) -> Path:
        return self.cache.libs

    @property
    def server_properties(self) -> Path:
        return self.data / "server.properties"

    @property
    def log4j2(self) -> Path:
        return self.data / "log4j2.properties"

    @property
    def log_dir(self) -> Path:
        return self.data / "logs"

    @property
    def pid_file(self) -> Path:
        return self.data / "broker.pid"

    @property
    def broker_log(self) -> Path:
        return self.data / "broker.log"

    @property
    def stdout_log(self) -> Path:
        return self.data / "broker.stdout"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _cache(settings: Settings) -> _Cache:
    return _Cache(settings.kafka_version, Path(settings.kafka_home).expanduser().resolve() / settings.kafka_version)


def _layout(settings: Settings) -> _Layout:
    first = settings.bootstrap.strip().split(",")[0].strip()  # a cluster's list starts with its first node
    host, sep, port_text = first.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65535:
        raise ConfigError(f"POVWATCH_BOOTSTRAP must be host:port, got {settings.bootstrap!r}")
    if host not in ("localhost", "127.0.0.1"):
        raise ConfigError(
            f"the local Kafka broker only runs on loopback (localhost or 127.0.0.1); "
            f"POVWATCH_BOOTSTRAP is {settings.bootstrap!r}"
        )
    port = int(port_text)
    return _Layout(_cache(settings), Path(settings.kafka_data).expanduser().resolve(), port, port + 1,
                   group_delay_ms=settings.kafka_group_delay_ms)


def broker_answers(bootstrap: str, timeout: float) -> bool:
    """True when the Kafka broker at `bootstrap` (one address: that node itself, not another of its cluster)
    answers a metadata request listing at least one broker, in time."""

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=max(int(timeout * 1000), 1),
                                **kafka_security.client_options())
        try:
            await client.bootstrap()  # a metadata request to the bootstrap address
            return bool(client.cluster.brokers())
        finally:
            await client.close()

    async def bounded() -> bool:
        return await asyncio.wait_for(probe(), timeout)

    quiet = logging.getLogger("aiokafka")  # a refused probe is an answer here, not an error worth logging
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(bounded())
    except Exception:  # connection refused, timeout, protocol error: all mean "does not answer"
        return False
    finally:
        quiet.setLevel(level)


def _tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, without Java stack frames (they hide the message that says what went wrong)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("at ", "..."))]
    return " | ".join(kept[-lines:])


def _our_pid(layout: _Layout) -> int | None:
    """The pid in the pid file if that process is the broker of this data dir (not a zombie, not a reused pid)."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    proc = _started.get(pid)
    if proc is not None and proc.poll() is not None:  # our child exited: reap it
        _started.pop(pid, None)
        return None
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    ours = b"kafka.Kafka" in args and str(layout.server_properties).encode() in args
    return pid if ours else None


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise EnvironmentProblem("Java 17+ is required to run the local Kafka broker: `java` not found on PATH")
    result = subprocess.run([java, "-version"], capture_output=True, text=True)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    major = 0
    if found:
        major = int(found.group(2) or 0) if found.group(1) == "1" else int(found.group(1))  # "1.8.0" is Java 8
    if major < 17:
        raise EnvironmentProblem(f"Java 17+ is required to run the local Kafka broker; `{java}` is Java "
                                 f"{major or 'of unknown version'}")
    return java


def cache_marker(version: str) -> str:
    """What `.complete` holds in a cache that has every artifact this code fetches for Kafka `version`."""
    return (f"povwatch kafka cache {CACHE_FORMAT}: kafka_2.13 {version}, kafka-tools {version}, "
            f"log4j-slf4j-impl {LOG4J_SLF4J_VERSION}\n")


def _write_if_changed(path: Path, text: str) -> None:
    """Write atomically (a reader never sees half a file), and only when the content differs."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _sync_jars(fetched: Path, libs: Path) -> None:
    """Make `libs` hold exactly the jars in `fetched`. Jars already there with the same name and size are left
    alone (a broker running from this cache keeps reading them); new ones are moved in, stale ones removed."""
    libs.mkdir(parents=True, exist_ok=True)
    wanted = {jar.name: jar for jar in fetched.glob("*.jar")}
    for name, jar in wanted.items():
        target = libs / name
        if not target.exists() or target.stat().st_size != jar.stat().st_size:
            os.replace(jar, target)
    for jar in libs.glob("*.jar"):
        if jar.name not in wanted:
            jar.unlink(missing_ok=True)


def _ensure_jars(cache: _Cache) -> None:
    """Fetch Kafka, its tools and their runtime dependencies into the cache once. A cache whose `.complete` does
    not hold this code's marker (none yet, or made before the tools were fetched) is completed."""
    try:
        if cache.complete.read_text() == cache_marker(cache.version):
            _write_if_changed(cache.tools_log4j2, TOOLS_LOG4J2)
            return
    except OSError:
        pass
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EnvironmentProblem(
            f"Maven is required to fetch Kafka {cache.version} the first time: `mvn` not found on PATH")
    cache.dist.mkdir(parents=True, exist_ok=True)
    pom = cache.dist / "pom.xml"  # kept: what was asked of Maven, to retry by hand after a failure
    _write_if_changed(pom, POM_TEMPLATE.format(kafka_version=cache.version, log4j_version=LOG4J_SLF4J_VERSION))
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache.dist))  # one per process: fetches may race
    try:
        fetched = staging / "libs"
        command = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                   "-DincludeScope=runtime", f"-DoutputDirectory={fetched}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(
                f"Maven did not fetch Kafka {cache.version} within {MAVEN_TIMEOUT_S:.0f} s") from None
        wanted = [f"kafka_2.13-{cache.version}.jar", f"kafka-tools-{cache.version}.jar"]
        if result.returncode != 0 or not all((fetched / jar).exists() for jar in wanted):
            last = " | ".join((result.stdout + result.stderr).strip().splitlines()[-8:])
            raise EnvironmentProblem(
                f"Maven could not fetch Kafka {cache.version} (exit {result.returncode}): {last}")
        _sync_jars(fetched, cache.libs)
        _write_if_changed(cache.tools_log4j2, TOOLS_LOG4J2)
        _write_if_changed(cache.complete, cache_marker(cache.version))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def java_classpath(settings: Settings) -> tuple[str, str, Path]:
    """(java, classpath, log4j2 configuration for command-line tools) from the jar cache, fetched if needed.
    Needs no broker and any bootstrap address (tools may address a remote cluster)."""
    java = require_java()
    cache = _cache(settings)
    _ensure_jars(cache)
    return java, f"{cache.libs}/*", cache.tools_log4j2


def _java_command(java: str, layout: _Layout, main: str, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
    return [java, *jvm, f"-Dlog4j2.configurationFile={layout.log4j2}", "-cp", f"{layout.libs}/*", main, *args]


def server_properties(layout: _Layout) -> str:
    """The plain server.properties of one node: broker and controller, replication derived from the number of
    voters (replication_for)."""
    voters = layout.voters or f"{layout.node_id}@127.0.0.1:{layout.controller_port}"
    replication, min_isr = replication_for(len(voters.split(",")))
    return SERVER_PROPERTIES_TEMPLATE.format(
        node_id=layout.node_id, voters=voters, port=layout.port, controller_port=layout.controller_port,
        log_dir=layout.log_dir, replication=replication, min_isr=min_isr, group_delay_ms=layout.group_delay_ms)


def _prepare_data(java: str, layout: _Layout, tls: kafka_secure_broker.BrokerTls | None,
                  cluster_id: str = "") -> None:
    """Write the configuration files (secured when `tls` is given) and format the storage if not formatted yet
    (with `cluster_id`, the one every node of a cluster shares; else a new one)."""
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    properties = server_properties(layout)
    if tls is not None:
        properties = kafka_secure_broker.secure_properties(properties, tls, layout.brokers)
    layout.server_properties.write_text(properties)
    layout.log4j2.write_text(LOG4J2_TEMPLATE.format(broker_log=layout.broker_log))
    if (layout.log_dir / "meta.properties").exists():
        return
    steps: list[tuple[str, ...]] = [("format", "-t", "<uuid>", "-c", str(layout.server_properties))]
    if not cluster_id:
        steps.insert(0, ("random-uuid",))
    for step in steps:
        args = [cluster_id if a == "<uuid>" else a for a in step]
        result = subprocess.run(_java_command(java, layout, "kafka.tools.StorageTool", *args),
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            last = " | ".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise EnvironmentProblem(f"could not format Kafka storage in {layout.log_dir} ({step[0]}): {last}")
        cluster_id = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def _wait_until_answers(layout: _Layout, proc: subprocess.Popen[bytes] | None, pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if broker_answers(layout.address, timeout=2.0):
            return
        died = proc.poll() is not None if proc is not None else _our_pid(layout) is None
        if died:
            layout.pid_file.unlink(missing_ok=True)
            last = _tail(layout.broker_log) or _tail(layout.stdout_log)
            raise EnvironmentProblem(f"the Kafka broker (pid {pid}) exited while starting: {last}")
        time.sleep(0.5)
    raise BrokerUnavailable(f"the Kafka broker (pid {pid}) did not answer on {layout.address} within "
                            f"{START_TIMEOUT_S:.0f} s; see {layout.broker_log} (stop it with `down`)")


def _probe_as(settings: Settings, layout: _Layout) -> kafka_security.ClientSecurity:
    """Who probes the broker: the secured broker answers its admin only."""
    try:
        secure = kafka_secure_broker.is_secure(layout.server_properties.read_text())
    except OSError:
        secure = False
    return kafka_secure_broker.admin_security(settings) if secure else kafka_security.PLAINTEXT


def _launch(java: str, layout: _Layout) -> subprocess.Popen[bytes]:
    """Start the broker of a prepared data dir (it answers later: _wait_until_answers) and write its pid file."""
    with open(layout.stdout_log, "ab") as out:
        proc = subprocess.Popen(
            _java_command(java, layout, "kafka.Kafka", str(layout.server_properties), jvm=("-Xmx512m",)),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=layout.data, start_new_session=True)
    _started[proc.pid] = proc
    layout.pid_file.write_text(f"{proc.pid}\n")
    return proc


def _check_ports_free(layout: _Layout) -> None:
    for port in (layout.port, layout.controller_port):
        if _port_in_use(port):
            raise EnvironmentProblem(
                f"port {port} on 127.0.0.1 is already in use by another process (not the broker of {layout.data}); "
                f"stop it or choose another POVWATCH_BOOTSTRAP port (the controller uses port + 1)")


def up(settings: Settings, *, secure: bool = False) -> str:
    """Start the local broker for `settings` (fetching Kafka first if needed); idempotent. `secure`: TLS with
    client certificates from the CA in POVWATCH_PKI_DIR and ACLs (plumbing/kafka_secure_broker.py)."""
    layout = _layout(settings)
    pid = _our_pid(layout)
    if pid is not None:
        with kafka_security.acting_as(_probe_as(settings, layout)):
            _wait_until_answers(layout, _started.get(pid), pid)
        return f"already running (pid {pid}) on {layout.address}, Kafka {layout.version}"
    layout.pid_file.unlink(missing_ok=True)  # stale: names a dead or foreign process
    java = require_java()
    _check_ports_free(layout)
    _ensure_jars(layout.cache)
    tls = kafka_secure_broker.broker_tls(Path(settings.pki_dir).resolve(), "broker-1") if secure else None
    _prepare_data(java, layout, tls)
    proc = _launch(java, layout)
    with kafka_security.acting_as(_probe_as(settings, layout)):
        _wait_until_answers(layout, proc, proc.pid)
    how = "secured (TLS, client certificates, ACLs)" if secure else "plaintext"
    return (f"started Kafka {layout.version} broker (pid {proc.pid}) on {layout.address}, {how}, "
            f"data in {layout.data}")


def down(settings: Settings) -> str:
    """Stop the broker this data dir started (SIGTERM, then SIGKILL after 30 s); not an error if none runs."""
    return _stop_node(_layout(settings))


def _stop_node(layout: _Layout, timeout: float = STOP_TIMEOUT_S) -> str:
    pid = _our_pid(layout)
    if pid is None:
        layout.pid_file.unlink(missing_ok=True)
        return f"not running (no broker started from {layout.data})"
    try:
        os.kill(pid, signal.SIGCONT)  # a frozen broker (SIGSTOP) would never act on SIGTERM
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    how = "stopped"
    deadline = time.monotonic() + timeout
    while _our_pid(layout) is not None:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            how = f"killed (no exit {timeout:.0f} s after SIGTERM)"
            while _our_pid(layout) is not None:
                time.sleep(0.1)
            break
        time.sleep(0.2)
    layout.pid_file.unlink(missing_ok=True)
    return f"{how} Kafka broker (pid {pid}) on {layout.address}"


def status(settings: Settings) -> str:
    """'running (pid N) on 127.0.0.1:9092, Kafka 4.1.1' or 'not running'."""
    layout = _layout(settings)
    pid = _our_pid(layout)
    if pid is None:
        return "not running"
    with kafka_security.acting_as(_probe_as(settings, layout)):
        answers = broker_answers(layout.address, timeout=2.0)
    answering = "" if answers else " (process alive but not answering yet)"
    return f"running (pid {pid}) on {layout.address}, Kafka {layout.version}{answering}"
