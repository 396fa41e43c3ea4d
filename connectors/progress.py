"""Progress of a long read on a terminal: rows, rate and ETA on one line of stderr, redrawn at most twice a second.

Quiet when stderr is not a terminal (a log file, a service's journal), so logs never fill with redraws.
The ETA comes from the source's own measure of how far it is (`position()` -> (done, total): bytes of a CSV,
rows of an XLSX whose sheet says its size); without a total there is no ETA.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "render"]

Position = Callable[[], tuple[int, int]]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def render(label: str, rows: int, elapsed: float, done: int, total: int) -> str:
    """One progress line, e.g. `h.csv: 120,000 rows  15,000 rows/s  12%  ETA 0:00:58`."""
    rate = rows / elapsed if elapsed > 0 else 0.0
    line = f"{label}: {rows:,} rows  {rate:,.0f} rows/s"
    if total > 0 and 0 < done <= total:
        line += f"  {100 * done / total:.0f}%"
        if elapsed > 0 and done < total:
            line += f"  ETA {_duration(elapsed * (total - done) / done)}"
    return line


class Progress:
    def __init__(self, label: str, position: Position, *, stream: TextIO | None = None,
                 enabled: bool | None = None, interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._label, self._position, self._interval, self._clock = label, position, interval, clock
        self._start = clock()
        self._last = float("-inf")
        self._width = 0
        self._rows = 0

    def update(self, rows: int) -> None:
        self._rows = rows
        now = self._clock()
        if not self.enabled or now - self._last < self._interval:
            return
        self._last = now
        self._draw(now)

    def close(self) -> None:
        """The last line, with the final count, then a line break (nothing at all when disabled)."""
        if self.enabled:
            self._draw(self._clock())
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, now: float) -> None:
        line = render(self._label, self._rows, now - self._start, *self._position())
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)
