"""The secured broker refuses whoever it must (issue #13, item 4): each refusal is the broker's own answer, seen on
the wire (a TLS alert, an authorization error code in Kafka's response), never a check made by the client.

A broker of this module's own (`povwatch kafka up --secure` as plumbing does it: TLS listeners requiring client
certificates, the StandardAuthorizer, `admin` super user) on the session port + 500, with a CA in a temp dir, the
project's topics, parties issued with their roles and the ACLs `acl apply` derives from them.
"""
from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError

from plumbing import kafka_acls, kafka_local, kafka_secure_broker, pki
from plumbing.kafka_io import ensure_topics
from plumbing.kafka_security import ClientSecurity, acting_as, client_options
from plumbing.settings import Settings
from services.access.cli import apply_acls, declared_parties
from services.access.grants import Names, declared_acls

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 500
BOOTSTRAP = f"127.0.0.1:{PORT}"
PARTIES = {"public-security": "department:public-security", "medical-security": "department:medical-security",
           "pboc": "department:pboc", "monitor": "monitor", "roster": "roster", "old-roster": "roster"}
# ApiVersions v0, correlation id 1, client id "test": the first request any Kafka client sends
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
_FRAME = struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS


class World:
    def __init__(self, root: Path) -> None:
        self.pki = root / "pki"
        self.settings = Settings(bootstrap=BOOTSTRAP, kafka_data=root / "kafka", pki_dir=self.pki)
        self.ca = pki.ca_paths(self.pki)[0]

    def party(self, name: str) -> ClientSecurity:
        cert, key = pki.party_paths(self.pki, name)
        return ClientSecurity("SSL", self.ca, cert, key)

    def admin(self) -> ClientSecurity:
        return kafka_secure_broker.admin_security(self.settings)

    async def apply(self) -> None:
        with acting_as(self.admin()):
            await apply_acls(BOOTSTRAP, declared_parties(self.pki, self.pki / "none.toml"), Names())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("secure"))
    pki.init(w.pki)
    for name, role in PARTIES.items():
        pki.issue(w.pki, name, role)
    kafka_local.up(w.settings, secure=True)
    try:
        with acting_as(w.admin()):
            asyncio.run(ensure_topics(BOOTSTRAP, 1))
        asyncio.run(w.apply())
        yield w
    finally:
        kafka_local.down(w.settings)


def _tls_exchange(world: World, cert: Path | None = None, key: Path | None = None, cafile: Path | None = None
                  ) -> bytes:
    """A TLS connection to the broker presenting `cert` (or none), then Kafka's first request; the answer's
    first bytes. An SSLError raised here is the broker's alert."""
    context = ssl.create_default_context(cafile=str(cafile or world.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    with socket.create_connection(("127.0.0.1", PORT), timeout=15) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(_FRAME)
        return tls.recv(4)


def test_a_party_with_its_certificate_gets_an_answer(world: World) -> None:
    """The control case: the same exchange as below, with a certificate of the CA, is answered by Kafka."""
    cert, key = pki.party_paths(world.pki, "public-security")
    answer = _tls_exchange(world, cert, key)
    assert len(answer) == 4 and struct.unpack(">i", answer)[0] > 0  # a Kafka response's size


def test_a_client_without_a_certificate_is_refused_at_the_handshake(world: World) -> None:
    with pytest.raises(ssl.SSLError, match="BAD_CERTIFICATE|CERTIFICATE_REQUIRED"):
        _tls_exchange(world)


def test_a_certificate_from_another_ca_is_refused(world: World, tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    pki.init(other)
    pki.issue(other, "public-security", "department:public-security")  # the same name, another CA
    cert, key = pki.party_paths(other, "public-security")
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN"):
        _tls_exchange(world, cert, key)


def test_a_plaintext_connection_is_refused(world: World) -> None:
    """Kafka's request in plaintext on the TLS port: the broker answers with a TLS alert record (content type 21)
    and closes; no Kafka response comes."""
    with socket.create_connection(("127.0.0.1", PORT), timeout=15) as raw:
        raw.sendall(_FRAME)
        answer = raw.recv(4096)
        rest = raw.recv(4096)
    assert answer[:1] == b"\x15", answer
    assert rest == b""  # closed


async def _produce(security: ClientSecurity, topic: str) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **client_options(security), acks="all",
                                enable_idempotence=True, request_timeout_ms=15_000)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"probe", key=b"k")
        return int(meta.offset)
    finally:
        await producer.stop()


async def _consume(security: ClientSecurity, topic: str, group: str) -> None:
    """Join `group` on `topic` and poll once (the group is one the party may use: what is refused is the topic)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, **client_options(security), group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=15_000)
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=2000)
    finally:
        await consumer.stop()


def test_a_department_writes_its_own_feed_and_not_another_s(world: World) -> None:
    ps = world.party("public-security")
    assert asyncio.run(_produce(ps, "events.public-security.vehicle-purchase")) >= 0
    with pytest.raises(TopicAuthorizationFailedError, match="events.medical-security.hospitalization"):
        asyncio.run(_produce(ps, "events.medical-security.hospitalization"))


@pytest.mark.parametrize("topic", ["alerts.household", "events.medical-security.hospitalization",
                                   "registry.persons"])
def test_a_department_cannot_read(world: World, topic: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError, match=topic):
        asyncio.run(_consume(world.party("pboc"), topic, "povwatch-compare-pboc"))


def test_a_department_reads_its_own_requests(world: World) -> None:
    asyncio.run(_consume(world.party("pboc"), "requests.pboc.comparison", "povwatch-compare-pboc"))


def test_the_monitor_cannot_write_the_registry(world: World) -> None:
    with pytest.raises(TopicAuthorizationFailedError, match="registry.persons"):
        asyncio.run(_produce(world.party("monitor"), "registry.persons"))
    assert asyncio.run(_produce(world.party("monitor"), "alerts.household")) >= 0


def test_a_revoked_party_is_refused_on_its_open_connection(world: World) -> None:
    """A producer connected before the revocation: its next request after `pki revoke` + `acl apply` is refused."""
    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **client_options(world.party("old-roster")),
                                    acks="all", enable_idempotence=True, request_timeout_ms=15_000)
        await producer.start()
        try:
            await producer.send_and_wait("registry.persons", b"before", key=b"k")
            pki.revoke(world.pki, "old-roster")
            await world.apply()
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait("registry.persons", b"after", key=b"k")
        finally:
            await producer.stop()

    asyncio.run(scenario())
    with acting_as(world.admin()):
        held = asyncio.run(kafka_acls.describe_acls(BOOTSTRAP))
    mine = {b for b in held if b.principal == "User:old-roster"}
    assert mine and all(b.permission == "DENY" for b in mine)
    # and a new connection too: refused already when its idempotent producer asks for a producer id
    with pytest.raises(ClusterAuthorizationFailedError):
        asyncio.run(_produce(world.party("old-roster"), "registry.persons"))


def test_acl_apply_makes_the_broker_equal_to_the_declaration(world: World) -> None:
    """A stray ACL is removed, a missing one added, and a second apply changes nothing."""
    stray = kafka_acls.AclBinding("User:public-security", "READ", "TOPIC", "alerts.household")

    async def scenario() -> tuple[list[kafka_acls.AclBinding], ...]:
        with acting_as(world.admin()):
            declared = declared_acls(declared_parties(world.pki, world.pki / "none.toml"), Names())
            gone = sorted(declared)[0]
            await kafka_acls.create_acls(BOOTSTRAP, [stray])
            await kafka_acls.delete_acls(BOOTSTRAP, [gone])
            first = await apply_acls(BOOTSTRAP, declared_parties(world.pki, world.pki / "none.toml"), Names())
            second = await apply_acls(BOOTSTRAP, declared_parties(world.pki, world.pki / "none.toml"), Names())
            assert await kafka_acls.describe_acls(BOOTSTRAP) == declared
            return first[0], first[1], second[0], second[1], [gone]

    added, removed, added_again, removed_again, gone = asyncio.run(scenario())
    assert (added, removed) == (gone, [stray])
    assert added_again == removed_again == []


def test_kafka_s_tools_connect_as_the_party(world: World) -> None:
    """`povwatch kafka tool kafka-topics --list` on the party's certificate (a client properties file made for
    the tool): the admin sees every topic, a department only those its ACLs name."""
    def listed(security: ClientSecurity) -> set[str]:
        env = {**os.environ, **security.env(), "POVWATCH_BOOTSTRAP": BOOTSTRAP}
        result = subprocess.run([sys.executable, "-m", "services.cli", "kafka", "tool", "kafka-topics", "--list"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return set(result.stdout.split())

    everything = listed(world.admin())
    assert {"registry.persons", "alerts.household", "events.pboc.deposit-loan"} <= everything
    assert listed(world.party("pboc")) == {t for t in everything if t.startswith(("events.pboc.", "dlq.pboc"))
                                           } | {"requests.pboc.comparison", "audit.events"}
