"""What each process did while a broker was faulted (tests/integration/test_cluster_freeze_disk.py): a thread
that samples the monitor's and the case feed's progress counters from their /metrics, and the warnings and
errors each process logged from the fault on.

    Progress(ports).start() ... .stop()   samples every 0.5 s: (time, {name: counter or None if unanswered})
    progress.report(fault_at, fault_end, name)   the longest stall across the fault, when the counter moved
                                           again; how long /metrics went unanswered
    LogWindow(paths)                       the byte offset of each log now; .lines(level words) what came after
"""
from __future__ import annotations

import threading
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from plumbing.processes import metric, scrape

INTERVAL_S = 0.5


@dataclass
class Stall:
    """The longest time a counter did not move across the fault, in seconds from the fault's start."""

    since_s: float  # the last move before the stall (negative: before the fault)
    until_s: float | None  # the first move after it; None: it never moved again (its work done, or stuck)
    unanswered_s: float  # how long /metrics did not answer from the fault on
    moved: float  # how far the counter went from the fault to the last sample

    @property
    def longest_s(self) -> float | None:
        return None if self.until_s is None else self.until_s - self.since_s

    def __str__(self) -> str:
        if self.until_s is None:
            told = f"no progress from {self.since_s:+.1f} s on"
        else:
            told = f"longest stall {self.longest_s:.1f} s (from {self.since_s:+.1f} s to {self.until_s:+.1f} s)"
        return f"{told}, /metrics unanswered {self.unanswered_s:.1f} s, {self.moved:.0f} counted since"


@dataclass
class Progress:
    """Samples `counters` ({name: (metrics port, metric name)}) until stop()."""

    counters: dict[str, tuple[int, str]]
    samples: list[tuple[float, dict[str, float | None]]] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Progress:
        self._thread = threading.Thread(target=self._run, name="fault-progress", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.is_set():
            now: dict[str, float | None] = {}
            for name, (port, counter) in self.counters.items():
                try:
                    now[name] = metric(scrape(port), counter)
                except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                    now[name] = None
            self.samples.append((time.monotonic(), now))
            self._done.wait(INTERVAL_S)

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(10)

    def report(self, fault_at: float, fault_end: float, name: str) -> Stall:
        """The longest stall of counter `name` that overlaps the fault [fault_at, fault_end] (monotonic times)."""
        answered = [(t - fault_at, v) for t, values in self.samples if (v := values[name]) is not None]
        unanswered = sum(INTERVAL_S for t, values in self.samples if t >= fault_at and values[name] is None)
        if not answered:
            return Stall(0.0, None, unanswered, 0.0)
        moves = [answered[0][0]] + [t for (_, before), (t, v) in zip(answered, answered[1:]) if v != before]
        after = [v for t, v in answered if t >= 0]
        moved = after[-1] - after[0] if after else 0.0
        end = fault_end - fault_at
        gaps = [(a, b) for a, b in zip(moves, moves[1:]) if b > 0 and a < end]
        if moves[-1] < end:  # it stopped moving before the fault was over and never moved again
            return Stall(moves[-1], None, unanswered, moved)
        since, until = max(gaps, key=lambda gap: gap[1] - gap[0]) if gaps else (moves[0], moves[0])
        return Stall(since, until, unanswered, moved)


class LogWindow:
    """Where each log ends now; `lines()` reads only what was written after. A `bare` log (a command's stderr:
    messages without time or level, warnings and errors only) counts every line but the development key's."""

    def __init__(self, paths: dict[str, Path], bare: tuple[str, ...] = ()) -> None:
        self.paths, self.bare = paths, bare
        self.offsets = {name: path.stat().st_size if path.exists() else 0 for name, path in paths.items()}

    def lines(self, name: str, words: tuple[str, ...] = (" WARNING ", " ERROR ", " CRITICAL ")) -> list[str]:
        path = self.paths[name]
        try:
            with open(path, "rb") as f:
                f.seek(self.offsets[name])
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        if name in self.bare:
            return [line for line in text.splitlines() if line.strip() and "DEVELOPMENT pseudonymisation" not in line]
        return [line for line in text.splitlines() if any(word in line for word in words)]

    def summary(self, name: str, shown: int = 3) -> str:
        """'N warnings/errors: <the most frequent kinds>' (the time stamp and numbers stripped to group them)."""
        found = self.lines(name)
        if not found:
            return "nothing logged at WARNING or above"
        kinds = Counter(" ".join(line.split()[: 7] if name in self.bare else line.split()[2:9]) for line in found)
        return f"{len(found)} lines at WARNING or above, e.g. " + " | ".join(
            f"{kind} (x{n})" for kind, n in kinds.most_common(shown))
