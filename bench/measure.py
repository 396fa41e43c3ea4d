"""What a benchmark reads about processes and the machine from Linux /proc: peak RSS (VmHWM), CPU seconds, bytes
written, the machine's busy cores. `Watch` samples a set of processes in a thread, so that a process's last
figures are known after it exits (VmHWM only grows: the last sample is its peak, to the sampling interval)."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcStats", "Watch", "proc_stats", "machine_busy", "MachineCpu"]


@dataclass
class ProcStats:
    peak_rss_mb: float = 0.0
    rss_mb: float = 0.0
    cpu_s: float = 0.0
    write_mb: float = 0.0  # bytes the process caused to be written to storage (/proc/<pid>/io), if readable


def proc_stats(pid: int) -> ProcStats | None:
    """The process's figures now; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmHWM" not in fields:  # a zombie: no memory left to read
        return None
    out = ProcStats(peak_rss_mb=int(fields["VmHWM"].split()[0]) / 1024,
                    rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
                    cpu_s=(int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"))
    try:
        io = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        out.write_mb = int(io["write_bytes"]) / 1e6
    except (OSError, KeyError, ValueError):
        pass
    return out


class Watch:
    """Samples named processes every `interval` seconds until `stop()`; `stats[name]` is the last sample."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.stats: dict[str, ProcStats] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="proc-watch")
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            self.pids[name] = pid
        self.sample(name)

    def sample(self, name: str) -> None:
        """Read the process now (e.g. just before it is stopped)."""
        with self._lock:
            pid = self.pids.get(name)
        got = proc_stats(pid) if pid is not None else None
        with self._lock:
            if got is not None:
                self.stats[name] = got
            elif pid is not None and name in self.stats:  # gone: never sample its pid again (pids are reused)
                self.pids.pop(name, None)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name in list(self.pids):
                self.sample(name)

    def stop(self) -> None:
        for name in list(self.pids):
            self.sample(name)
        self._stop.set()
        self._thread.join(5)


@dataclass(frozen=True)
class MachineCpu:
    busy: float  # CPU seconds spent by every process of the machine (user, nice, system, irq)
    iowait: float
    at: float  # time.monotonic()


def machine_busy() -> MachineCpu:
    """The machine's CPU counters now (/proc/stat, all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return MachineCpu((user + nice + system + irq + softirq + steal) / tick, iowait / tick, time.monotonic())
