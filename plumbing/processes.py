"""Running povwatch's long-lived processes as children (demo, benchmark, end-to-end tests) and reading their
/metrics. Real processes, real ports: what an operator would run by hand."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from schemas.errors import EnvironmentProblem

__all__ = ["ChildProcess", "scrape", "wait_until", "metric"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class ChildProcess:
    """`povwatch <args>` in its own process group, output to a log file."""

    def __init__(self, args: list[str], *, env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args], env={**os.environ, **env}, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or committed."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:<port>/metrics, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode("utf-8")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(v for (n, lbl), v in samples.items() if n == name and set(labels.items()) <= set(lbl))


def wait_until(port: int, done: Callable[[Samples], bool], *, timeout: float, child: ChildProcess | None = None,
               what: str = "condition", interval: float = 0.25) -> Samples:
    """Poll /metrics until `done(samples)`; EnvironmentProblem on timeout or if the child died."""
    deadline = time.monotonic() + timeout
    last: Samples = {}
    while time.monotonic() < deadline:
        if child is not None and not child.alive:
            raise EnvironmentProblem(f"{' '.join(child.args)} exited ({child.proc.returncode}) while waiting for "
                                     f"{what}:\n{child.tail()}")
        try:
            last = scrape(port)
            if done(last):
                return last
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(interval)
    shown = ", ".join(f"{n}{dict(lbl) if lbl else ''}={v:g}" for (n, lbl), v in sorted(last.items())
                      if n.startswith("povwatch_") and not n.endswith(("_created", "_bucket")) and v)
    raise EnvironmentProblem(f"timed out after {timeout:.0f}s waiting for {what}; last metrics: {shown or 'none'}"
                             + (f"\n{child.tail(30)}" if child is not None else ""))
