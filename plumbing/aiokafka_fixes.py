"""A fix to aiokafka's consumer (0.14) that a broker frozen or failing over made visible (docs/cluster.md).

A consumer that needs a starting position for a partition (just assigned after a rebalance, or reset) asks the
partition's leader with a ListOffsets request: `Fetcher._update_fetch_positions`. When the leader has moved,
the broker answers NOT_LEADER_OR_FOLLOWER; aiokafka logs "Failed fetch offsets from <node>" and asks the same
node again, every retry_backoff_ms, without refreshing its metadata: until the periodic refresh
(metadata_max_age_ms, 5 minutes) the partition gets no position, and a consumer that waits for all of its
partitions stalls that long. Under a 30 s freeze of one broker of three the monitor stalled 2.5 minutes, logging
the line 740 times. Its other paths (fetches, `end_offsets`, producers) do refresh on such an error.

`apply()` wraps `Fetcher._proc_offset_request` so that a failed request (not the leader, the node's connection
lost, a request timed out on a frozen node) asks for fresh metadata before aiokafka retries, as Java's client
does on a disconnection or a stale-leader error. The error still reaches aiokafka. Idempotent; called by
plumbing.kafka_security.client_options(), which every client of the project goes through before it is made.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import KafkaError

__all__ = ["apply", "applied"]

_MARK = "_povwatch_refreshes_metadata"


def applied() -> bool:
    return bool(getattr(Fetcher._proc_offset_request, _MARK, False))


def apply() -> None:
    if applied():
        return
    original: Callable[..., Awaitable[Any]] = Fetcher._proc_offset_request

    async def proc_offset_request(self: Any, node_id: int, topic_data: Any) -> Any:
        try:
            return await original(self, node_id, topic_data)
        except KafkaError:
            self._client.force_metadata_update()
            raise

    setattr(proc_offset_request, _MARK, True)
    Fetcher._proc_offset_request = proc_offset_request
