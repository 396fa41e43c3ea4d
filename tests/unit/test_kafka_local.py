"""The local Kafka broker refuses clearly before starting anything: no Java, no Maven, a non-loopback address."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from schemas.errors import ConfigError, EnvironmentProblem
from services import kafka_local
from services.settings import Settings


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
    settings = Settings(bootstrap="127.0.0.1:19392", kafka_data=tmp_path / "data", kafka_home=tmp_path / "home")
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
