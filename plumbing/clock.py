"""The one injected clock: whatever needs "now" takes a `Clock` (default `utc_now`), so tests pass a fixed one.

    Clock      a function of no arguments returning an aware datetime (UTC)
    utc_now    the real clock
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

__all__ = ["Clock", "utc_now"]

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Now, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)
