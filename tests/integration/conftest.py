"""Integration fixtures: one real local Kafka broker (KRaft) for the whole test session, on 127.0.0.1:19092
(`POVWATCH_TEST_BROKER_PORT` to move it).

The jars come from the default per-machine cache (`Settings.kafka_home`), so Maven fetches them once per machine;
the broker's data lives in a session temp dir. If the broker cannot start, the tests fail (they never skip).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from plumbing import kafka_local
from plumbing.settings import Settings

# POVWATCH_TEST_BROKER_PORT lets two test sessions on one machine use two brokers (the controller takes port + 1)
SESSION_BOOTSTRAP = f"127.0.0.1:{int(os.environ.get('POVWATCH_TEST_BROKER_PORT', '19092'))}"


@pytest.fixture(scope="session")
def broker_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(bootstrap=SESSION_BOOTSTRAP, kafka_data=tmp_path_factory.mktemp("kafka-session"))


@pytest.fixture(scope="session")
def broker(broker_settings: Settings) -> Iterator[str]:
    kafka_local.up(broker_settings)
    try:
        yield SESSION_BOOTSTRAP
    finally:
        kafka_local.down(broker_settings)
