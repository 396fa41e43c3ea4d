"""The broker's ACLs: read, add and remove them (Kafka's DescribeAcls, CreateAcls and DeleteAcls requests).

aiokafka's admin client has no ACL calls; it has the requests (aiokafka.protocol.admin), sent here on its
connection, which carries the party's certificate (plumbing/kafka_security.py). Kafka 4 answers the versions
aiokafka negotiates (DescribeAcls v1-2, CreateAcls v1, DeleteAcls v1: prefixed patterns included).

    AclBinding(principal, operation, resource_type, name, pattern, permission)   one ACL, hashable, sortable
    describe_acls(bootstrap) -> set[AclBinding]                                   every ACL of the cluster
    create_acls(bootstrap, bindings) / delete_acls(bootstrap, bindings)           exactly these
    wait_for_acls(bootstrap, expected)    until the broker answers with exactly `expected`: the controller
                                          accepts a change before the brokers' authorizers hold it
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

from plumbing.kafka_io import AdminClient
from plumbing.kafka_security import client_options
from schemas.errors import BrokerUnavailable

__all__ = ["AclBinding", "describe_acls", "create_acls", "delete_acls", "wait_for_acls", "Operation", "ResourceType",
           "Pattern"]

ResourceType = Literal["TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "CLUSTER_ACTION",
                    "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE"]
Permission = Literal["ALLOW", "DENY"]

# Kafka's wire codes (org.apache.kafka.common.acl / resource)
_RESOURCE = {"ANY": 1, "TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5}
_PATTERN = {"ANY": 1, "MATCH": 2, "LITERAL": 3, "PREFIXED": 4}
_OPERATION = {"ANY": 1, "ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8,
              "CLUSTER_ACTION": 9, "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11, "IDEMPOTENT_WRITE": 12}
_PERMISSION = {"ANY": 1, "DENY": 2, "ALLOW": 3}
_NAMES = {table_id: {code: name for name, code in table.items()}
          for table_id, table in (("r", _RESOURCE), ("p", _PATTERN), ("o", _OPERATION), ("m", _PERMISSION))}
_TIMEOUT_MS = 15_000


@dataclass(frozen=True, order=True)
class AclBinding:
    principal: str  # User:<name>
    operation: str
    resource_type: str
    name: str  # topic or group name or prefix; "kafka-cluster" for the cluster
    pattern: str = "LITERAL"
    permission: str = "ALLOW"
    host: str = "*"

    def describe(self) -> str:
        where = f"{self.resource_type}:{self.name}" + ("*" if self.pattern == "PREFIXED" else "")
        return f"{self.permission:<5} {self.principal} {self.operation} {where}"


def _binding(resource: tuple[Any, ...], acl: tuple[Any, ...]) -> AclBinding:
    rtype, rname, rpattern = resource
    principal, host, operation, permission = acl
    return AclBinding(principal, _NAMES["o"][operation], _NAMES["r"][rtype], rname, _NAMES["p"][rpattern],
                      _NAMES["m"][permission], host)


def _args(b: AclBinding) -> tuple[Any, ...]:
    return (_RESOURCE[b.resource_type], b.name, _PATTERN[b.pattern], b.principal, b.host, _OPERATION[b.operation],
            _PERMISSION[b.permission])


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_TIMEOUT_MS, **client_options())
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc or type(exc).__name__}") from None
    return admin


def _check(error_code: int, error_message: str | None, what: str) -> None:
    if error_code:
        from aiokafka.errors import for_code

        name = for_code(error_code).__name__
        raise BrokerUnavailable(f"the broker refused to {what}: {name}" + (f" ({error_message})" if error_message
                                                                            else ""))


async def describe_acls(bootstrap: str) -> set[AclBinding]:
    admin = await _admin(bootstrap)
    try:
        response = await admin._send_request(DescribeAclsRequest(
            _RESOURCE["ANY"], None, _PATTERN["ANY"], None, None, _OPERATION["ANY"], _PERMISSION["ANY"]))
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot read the ACLs at {bootstrap}: {exc}") from None
    finally:
        await admin.close()
    _check(response.error_code, response.error_message, "list the ACLs")
    return {_binding((r[0], r[1], r[2]), acl) for r in response.resources for acl in r[3]}


async def create_acls(bootstrap: str, bindings: Iterable[AclBinding]) -> None:
    admin = await _admin(bootstrap)
    try:
        for binding in bindings:
            response = await admin._send_request(CreateAclsRequest(*_args(binding)))
            for code, message in response.creation_responses:
                _check(code, message, f"add {binding.describe()}")
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot add ACLs at {bootstrap}: {exc}") from None
    finally:
        await admin.close()


async def delete_acls(bootstrap: str, bindings: Iterable[AclBinding]) -> None:
    admin = await _admin(bootstrap)
    try:
        for binding in bindings:
            response = await admin._send_request(DeleteAclsRequest(*_args(binding)))
            for code, message, _matching in response.filter_responses:
                _check(code, message, f"remove {binding.describe()}")
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot remove ACLs at {bootstrap}: {exc}") from None
    finally:
        await admin.close()


async def wait_for_acls(bootstrap: str, expected: set[AclBinding], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (found := await describe_acls(bootstrap)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise BrokerUnavailable(f"the broker at {bootstrap} still holds {len(found - expected)} ACLs not "
                                    f"declared and lacks {len(expected - found)} after {timeout:.0f} s")
        await asyncio.sleep(0.2)
