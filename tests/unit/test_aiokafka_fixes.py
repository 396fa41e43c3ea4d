"""plumbing/aiokafka_fixes.py: a ListOffsets answer saying the leader moved makes the consumer ask for fresh
metadata (aiokafka 0.14 alone retried the stale leader until its 5-minute refresh: docs/cluster.md). The
stalled consumer itself is shown by tests/integration/test_cluster_freeze_disk.py."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError, RequestTimedOutError

from plumbing import aiokafka_fixes
from plumbing.kafka_security import client_options

pytestmark = pytest.mark.fast


class Client:
    """The client a Fetcher talks through: every request fails with `error`; metadata refreshes are counted."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.refreshes = 0

    async def send(self, node_id: int, request: Any) -> Any:
        raise self.error

    def force_metadata_update(self) -> None:
        self.refreshes += 1


class FetcherOf:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._isolation_level = 0


def _ask(error: Exception) -> int:
    client = Client(error)
    with pytest.raises(type(error)):
        asyncio.run(Fetcher._proc_offset_request(FetcherOf(client), 1, {"events.x": [(0, -1)]}))
    return client.refreshes


def test_every_client_gets_the_fix_through_its_options() -> None:
    client_options()
    assert aiokafka_fixes.applied()
    aiokafka_fixes.apply()  # again: wrapped once
    wrapped = Fetcher._proc_offset_request
    aiokafka_fixes.apply()
    assert Fetcher._proc_offset_request is wrapped


def test_a_moved_leader_or_a_frozen_one_asks_for_fresh_metadata_and_the_error_goes_on() -> None:
    aiokafka_fixes.apply()
    assert _ask(NotLeaderForPartitionError()) == 1
    assert _ask(RequestTimedOutError()) == 1
    assert _ask(KafkaConnectionError("refused")) == 1
