"""The local Kafka broker refuses clearly before starting anything: no Java, no Maven, a non-loopback address."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from plumbing import kafka_local
from plumbing.settings import Settings
from schemas.errors import ConfigError, EnvironmentProblem


def _free_bootstrap() -> str:
    """A loopback address nobody listens on (nor on the port after it, the controller's), so `up` gets as far as
    fetching the jars."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s:
            if port < 65534 and s.connect_ex(("127.0.0.1", port + 1)) != 0:
                return f"127.0.0.1:{port}"


def test_up_without_java_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    settings = Settings(bootstrap="127.0.0.1:19392", kafka_data=tmp_path / "data", kafka_home=tmp_path / "home")
    with pytest.raises(EnvironmentProblem, match=r"Java 17\+ is required .*`java` not found on PATH"):
        kafka_local.up(settings)
    assert not (tmp_path / "data" / "broker.pid").exists()


def test_up_without_maven_when_kafka_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = shutil.which("java")
    assert java is not None, "these tests need Java 17+ on PATH"
    only_java = tmp_path / "only-java"
    only_java.mkdir()
    (only_java / "java").symlink_to(Path(java).resolve())
    monkeypatch.setenv("PATH", str(only_java))
    settings = Settings(bootstrap=_free_bootstrap(), kafka_data=tmp_path / "data", kafka_home=tmp_path / "home")
    with pytest.raises(EnvironmentProblem, match="Maven is required .*`mvn` not found on PATH"):
        kafka_local.up(settings)
    assert not (tmp_path / "home" / "4.1.1" / ".complete").exists()


@pytest.mark.parametrize("bootstrap", ["kafka.example.org:9092", "10.0.0.5:9092", "0.0.0.0:9092"])
def test_up_refuses_non_loopback_bootstrap(bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(bootstrap=bootstrap, kafka_data=tmp_path / "data")
    with pytest.raises(ConfigError, match="only runs on loopback"):
        kafka_local.up(settings)


@pytest.mark.parametrize("bootstrap", ["localhost", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_bootstrap_is_a_config_error(bootstrap: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="host:port"):
        kafka_local.status(Settings(bootstrap=bootstrap, kafka_data=tmp_path / "data"))


def test_status_and_down_when_nothing_was_started(tmp_path: Path) -> None:
    settings = Settings(bootstrap="127.0.0.1:19392", kafka_data=tmp_path / "data")
    assert kafka_local.status(settings) == "not running"
    assert kafka_local.down(settings).startswith("not running")


def _java_only_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = shutil.which("java")
    assert java is not None, "these tests need Java 17+ on PATH"
    only_java = tmp_path / "only-java"
    only_java.mkdir()
    (only_java / "java").symlink_to(Path(java).resolve())
    monkeypatch.setenv("PATH", str(only_java))


def test_a_cache_made_before_the_tools_is_completed_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    # a cache as the previous version of kafka_local left it: the broker's jars and the old marker, no tools
    dist = tmp_path / "home" / "4.1.1"
    (dist / "libs").mkdir(parents=True)
    (dist / "libs" / "kafka_2.13-4.1.1.jar").write_bytes(b"jar")
    (dist / ".complete").write_text("kafka_2.13 4.1.1\n")
    _java_only_path(tmp_path, monkeypatch)  # so completing it needs Maven, and says so
    settings = Settings(bootstrap=_free_bootstrap(), kafka_data=tmp_path / "data", kafka_home=tmp_path / "home")
    with pytest.raises(EnvironmentProblem, match="Maven is required .*`mvn` not found on PATH"):
        kafka_local.java_classpath(settings)
    with pytest.raises(EnvironmentProblem, match="Maven is required"):
        kafka_local.up(settings)
    assert (dist / ".complete").read_text() == "kafka_2.13 4.1.1\n"
    assert not (tmp_path / "data" / "broker.pid").exists()


def test_a_complete_cache_is_used_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "home" / "4.1.1"
    dist.mkdir(parents=True)
    (dist / ".complete").write_text(kafka_local.cache_marker("4.1.1"))
    _java_only_path(tmp_path, monkeypatch)
    java, classpath, log4j2 = kafka_local.java_classpath(Settings(kafka_home=tmp_path / "home"))
    assert Path(java).name == "java" and classpath == f"{dist / 'libs'}/*"
    assert "SYSTEM_ERR" in log4j2.read_text()  # the tools log to stderr, their output stays on stdout
    assert kafka_local.cache_marker("4.1.1") != "kafka_2.13 4.1.1\n"
    assert "kafka-tools 4.1.1" in kafka_local.cache_marker("4.1.1")


def test_completing_the_cache_leaves_the_jars_a_running_broker_reads(tmp_path: Path) -> None:
    libs, fetched = tmp_path / "libs", tmp_path / "fetched"
    libs.mkdir()
    fetched.mkdir()
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"broker")
    (libs / "log4j-core-2.0.jar").write_bytes(b"stale")
    (fetched / "kafka_2.13-4.1.1.jar").write_bytes(b"broker")
    (fetched / "kafka-tools-4.1.1.jar").write_bytes(b"tools")
    inode = (libs / "kafka_2.13-4.1.1.jar").stat().st_ino
    kafka_local._sync_jars(fetched, libs)
    assert sorted(p.name for p in libs.iterdir()) == ["kafka-tools-4.1.1.jar", "kafka_2.13-4.1.1.jar"]
    assert (libs / "kafka_2.13-4.1.1.jar").stat().st_ino == inode  # the same file, not a copy
    assert (libs / "kafka-tools-4.1.1.jar").read_bytes() == b"tools"


@pytest.mark.parametrize(("delay", "expected"), [(None, "0"), (3000, "3000")])
def test_a_new_groups_wait_is_the_setting(delay: int | None, expected: str, tmp_path: Path) -> None:
    """The local broker forms a new consumer group at once unless told to wait (bench/pipeline.py's workers)."""
    extra = {} if delay is None else {"kafka_group_delay_ms": delay}
    settings = Settings(bootstrap="127.0.0.1:19500", kafka_data=tmp_path, **extra)
    lines = kafka_local.server_properties(kafka_local._layout(settings)).splitlines()
    assert f"group.initial.rebalance.delay.ms={expected}" in lines


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="kafka_group_delay_ms"):
        Settings(kafka_group_delay_ms=-1)
