"""A failed batch's outputs kept for its flush are not sent with the next batch: the engine's recovery tells the
handlers of the partitions the batch touched to forget them, and rolls their state back (the replay makes both
again). The consumer is a stand-in recording seeks and pauses; the stage spec, partition, store and handler are
the monitor's own."""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiokafka import TopicPartition

from plumbing.settings import Settings
from schemas.codec import default_codec
from services.monitor.app import stage_specs
from services.monitor.engine import StageRunner, _Part
from services.monitor.store import MemoryStore

NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 3, 1)
VILLAGE = "652701100201"
CODEC = default_codec()


class Consumer:
    """What `_recover` asks of the consumer: its assignment, and seeking and pausing partitions."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self._assigned = assigned
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.paused: list[TopicPartition] = []

    def assignment(self) -> set[TopicPartition]:
        return self._assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused += tps


def village_runner() -> tuple[StageRunner[Any], _Part[Any], str]:
    spec = next(s for s in stage_specs(Settings(), CODEC) if s.name == "village")
    runner: StageRunner[Any] = StageRunner(spec, bootstrap="127.0.0.1:1", producer_factory=None,  # type: ignore
                                           codec=CODEC, clock=lambda: NOW, stopping=asyncio.Event())
    part = _Part(spec, 0, MemoryStore(), CODEC)
    part.restored = part.ready = True
    runner._parts[0] = part
    return runner, part, spec.inputs[0]


def test_a_failed_batch_leaves_neither_its_regional_alerts_nor_its_state() -> None:
    runner, part, topic = village_runner()
    for h in range(5):  # a qualifying cluster: its alert waits for the batch's flush
        part.handler.event(topic, CODEC.encode("povwatch.monitor.VillageDisaster", {
            "village_code": VILLAGE, "household_id": f"H{h}", "event_id": f"dis-{h}", "disaster_date": DAY}), NOW)
    assert part.state[VILLAGE].fired  # the batch changed the state and holds an alert for the flush
    first = TopicPartition(topic, 0)
    runner._in_flight, runner._touched = {first: 40}, {0}
    consumer = Consumer({first})
    asyncio.run(runner._recover(consumer))  # type: ignore[arg-type]
    assert part.handler.flush(NOW) == []  # the failed batch's alert is not sent with the next one
    assert consumer.seeks == [(first, 40)]  # the batch is read again from its first offset
    assert VILLAGE not in part.state and not part.ready  # the state goes back to the changelog's
    assert first in consumer.paused  # inputs wait until it is restored
