"""plumbing/kafka_io.py's offset look-ups turn any Kafka error into BrokerUnavailable, the one error every
service's retry loop expects while a broker is away (the relay once died on a KafkaTimeoutError from
end_offsets() just after the broker came back)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from plumbing import kafka_io
from schemas.errors import BrokerUnavailable


class Consumer:
    """A started consumer that knows two partitions of `t` and whose offset requests fail with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error, self.stopped = error, False

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0, 1} if topic == "t" else None

    async def end_offsets(self, tps: Any) -> Any:
        raise self.error

    async def beginning_offsets(self, tps: Any) -> Any:
        raise self.error

    async def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize("error", [KafkaTimeoutError(), NotLeaderForPartitionError()])
@pytest.mark.parametrize("call", [kafka_io.topic_end_offsets, kafka_io.topic_offsets])
def test_an_offset_request_that_fails_is_broker_unavailable(monkeypatch: pytest.MonkeyPatch, error: Exception,
                                                            call: Any) -> None:
    consumer = Consumer(error)

    async def started(bootstrap: str, **options: Any) -> Consumer:
        return consumer

    monkeypatch.setattr(kafka_io, "_started_consumer", started)
    with pytest.raises(BrokerUnavailable, match=r"cannot reach Kafka at h:1: .*is it running"):
        asyncio.run(call("h:1", ["t", "missing"]))
    assert consumer.stopped


def test_missing_topics_alone_ask_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = Consumer(KafkaTimeoutError())

    async def started(bootstrap: str, **options: Any) -> Consumer:
        return consumer

    monkeypatch.setattr(kafka_io, "_started_consumer", started)
    assert asyncio.run(kafka_io.topic_end_offsets("h:1", ["missing"])) == {}
    assert asyncio.run(kafka_io.topic_offsets("h:1", ["missing"])) == {}
