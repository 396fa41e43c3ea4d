"""`povwatch_cases_overdue`: how many case alerts are overdue (not acknowledged within POVWATCH_CASE_VERIFY_DAYS
days of their opening: services/cases/deadlines.py), counted by the casefeed process at its start and every
REFRESH_SECONDS after, for the PovwatchCasesOverdue alert (deploy/prometheus/rules/povwatch.rules.yml).

    gauge = OverdueGauge(store, verify_days=15, zone=ZONE, clock=now)
    await gauge.tick()     # in the feed's loop: counts when it is due (at once the first time), else nothing

While the case DB is unavailable the gauge keeps its last value (one log line); the next tick tries again.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

from connectors.framework import local_today
from plumbing.clock import Clock
from schemas.errors import DatabaseUnavailable
from services.casedb.store import CaseStore
from services.cases.overdue import count_overdue

__all__ = ["OVERDUE", "REFRESH_SECONDS", "OverdueGauge"]

log = logging.getLogger("povwatch.casefeed")

OVERDUE = Gauge("povwatch_cases_overdue",
                "Case alerts OPEN in open cases and not acknowledged within POVWATCH_CASE_VERIFY_DAYS days of their "
                "opening (counted by the casefeed every minute)")
REFRESH_SECONDS = 60.0


class OverdueGauge:
    """Counts the overdue case alerts into OVERDUE at most every `every` seconds (see the module doc)."""

    def __init__(self, store: CaseStore, *, verify_days: int, zone: dt.tzinfo, clock: Clock,
                 every: float = REFRESH_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._verify_days = verify_days
        self._zone = zone
        self._clock = clock
        self._every = every
        self._monotonic = monotonic
        self._next: float | None = None  # when the next count is due (None: at once)

    def due(self) -> bool:
        return self._next is None or self._monotonic() >= self._next

    def refresh(self) -> int | None:
        """Count now and set the gauge; the count, or None when the case DB was unavailable (gauge unchanged).
        Blocking (a query)."""
        self._next = self._monotonic() + self._every
        try:
            count = count_overdue(self._store, today=local_today(self._clock(), self._zone),
                                  verify_days=self._verify_days, zone=self._zone)
        except DatabaseUnavailable as exc:
            log.warning("could not count the overdue case alerts (povwatch_cases_overdue kept): %s", exc)
            return None
        OVERDUE.set(count)
        return count

    async def tick(self) -> None:
        """Refresh (in a worker thread) when due."""
        if self.due():
            await asyncio.to_thread(self.refresh)
