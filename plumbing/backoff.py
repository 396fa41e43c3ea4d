"""Retry delays after transient failures (a database or broker gone), shared by the long-running processes."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential retry delays: first, first*factor, ... capped at `maximum` seconds."""

    first: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, ...)."""
        if attempt < 1:
            raise ValueError("attempts are counted from 1")
        return min(self.maximum, self.first * self.factor ** min(attempt - 1, 64))
