"""Sending many Kafka messages at once (the monitor's stages send every output of a batch with it).

`BatchSender(producer).send(messages)` groups (topic, key, value, partition) messages by partition into producer
batches and waits until all are acknowledged: cheaper than one `send()` per message (a future and a partitioner
call each). Keys are partitioned as Kafka's default partitioner does (murmur2, positive, modulo the partition
count), so a key lands where every other producer of the project puts it."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

__all__ = ["BatchSender"]


class BatchSender:
    """Sends many messages at once: grouped by partition into producer batches, acknowledged together.

    Cheaper than one `send()` per message (a future and a partitioner call each). Keys are partitioned as
    Kafka's default partitioner does (murmur2, positive, modulo the partition count), so a key lands where every
    other producer of the project puts it; the partition of a key is remembered."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._counts: dict[str, int] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}

    async def _partition(self, topic: str, key: bytes) -> int:
        found = self._partition_of.get((topic, key))
        if found is not None:
            return found
        count = self._counts.get(topic)
        if count is None:
            count = self._counts[topic] = len(await self._producer.partitions_for(topic))
        if len(self._partition_of) > 2_000_000:
            self._partition_of.clear()
        found = self._partition_of[(topic, key)] = (int(murmur2(key)) & 0x7FFFFFFF) % count
        return found

    async def send(self, messages: Iterable[tuple[str, bytes, bytes | None, int | None]]) -> None:
        """Send (topic, key, value, partition or None) messages and wait until all are acknowledged."""
        await asyncio.gather(*await self.enqueue(messages))

    async def enqueue(self, messages: Iterable[tuple[str, bytes, bytes | None, int | None]]
                      ) -> list[asyncio.Future[Any]]:
        """Hand (topic, key, value, partition or None) messages to the producer without waiting for them: the
        futures of their acknowledgements (a caller awaits them all, or retrieves their failure). Messages of one
        partition are sent in the order they are handed over, across calls."""
        groups: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        for topic, key, value, partition in messages:
            p = partition if partition is not None else await self._partition(topic, key)
            groups.setdefault((topic, p), []).append((key, value))
        producer = self._producer
        futures: list[asyncio.Future[Any]] = []
        for (topic, p), items in groups.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    if batch.record_count():
                        futures.append(await producer.send_batch(batch, topic, partition=p))
                        batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:  # larger than a batch
                        futures.append(await producer.send(topic, value, key=key, partition=p))
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=p))
        return futures
