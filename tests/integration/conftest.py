"""Integration fixtures: one real local Kafka broker (KRaft) for the whole test session, on 127.0.0.1:19092
(`POVWATCH_TEST_BROKER_PORT` to move it).

The jars come from the default per-machine cache (`Settings.kafka_home`), so Maven fetches them once per machine;
the broker's data lives in a session temp dir. If the broker cannot start, the tests fail (they never skip).

`POVWATCH_TEST_SECURE=1`: the session broker runs secured (`kafka up --secure`: TLS, client certificates, ACLs),
with a CA in the session temp dir, and the tests and the processes they start act as its `admin` (the
POVWATCH_SSL_* variables are set for the session). Tests that start plaintext brokers of their own do not run
in that mode (docs/testing.md).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from plumbing import kafka_local, kafka_secure_broker, kafka_security, pki
from plumbing.settings import Settings, load_settings

# POVWATCH_TEST_BROKER_PORT lets two test sessions on one machine use two brokers (the controller takes port + 1)
SESSION_BOOTSTRAP = f"127.0.0.1:{int(os.environ.get('POVWATCH_TEST_BROKER_PORT', '19092'))}"
SECURE = os.environ.get("POVWATCH_TEST_SECURE") == "1"


@pytest.fixture(scope="session")
def broker_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("kafka-session")
    return Settings(bootstrap=SESSION_BOOTSTRAP, kafka_data=data, pki_dir=data / "pki")


def _act_as_admin(settings: Settings) -> None:
    """The session's CA and admin party; this process and its children act as admin from now on."""
    pki.init(settings.pki_dir)
    admin = kafka_secure_broker.admin_security(settings)
    os.environ.update(admin.env())
    kafka_security.configure(load_settings())


@pytest.fixture(scope="session")
def broker(broker_settings: Settings) -> Iterator[str]:
    if SECURE:
        _act_as_admin(broker_settings)
    kafka_local.up(broker_settings, secure=SECURE)
    try:
        yield SESSION_BOOTSTRAP
    finally:
        kafka_local.down(broker_settings)
