"""The consumer-lag gauge, defined once for every povwatch process that consumes (casefeed, monitor).

    povwatch_consumer_lag{group, topic, partition}   messages on the partition that the group has not yet
                                                     finished with (end offset - committed/next offset)

Import `CONSUMER_LAG` from here (a second Gauge of the same name in one process would be refused by
prometheus_client); `LagTracker` keeps the series of one consumer group equal to its current assignment.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Gauge

__all__ = ["CONSUMER_LAG", "LagTracker", "lag"]

CONSUMER_LAG = Gauge("povwatch_consumer_lag",
                     "Messages not yet consumed and committed by the group, per topic partition",
                     ["group", "topic", "partition"])


def lag(end: int, done: int) -> int:
    """Messages between the next offset to finish (`done`) and the end of the partition (never negative)."""
    return max(0, end - done)


class LagTracker:
    """Sets the gauge for one group's partitions; drops the series of partitions it no longer has."""

    def __init__(self, group: str) -> None:
        self._group = group
        self._shown: set[tuple[str, int]] = set()

    def update(self, ends: Mapping[tuple[str, int], int], done: Mapping[tuple[str, int], int],
               assigned: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Gauge := ends - done for each assigned (topic, partition) known in both; returns what was set."""
        current = set(assigned)
        for topic, partition in self._shown - current:
            CONSUMER_LAG.remove(self._group, topic, str(partition))
        self._shown &= current
        shown: dict[tuple[str, int], int] = {}
        for tp in sorted(current):
            if tp in ends and tp in done:
                shown[tp] = lag(ends[tp], done[tp])
                CONSUMER_LAG.labels(self._group, tp[0], str(tp[1])).set(shown[tp])
                self._shown.add(tp)
        return shown
