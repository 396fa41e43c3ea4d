"""Generated rosters and department files for the monitor's operations tests, with exactly known alerts.

Every household is rich (per-capita income 1,000,000 CNY), so no medical stay reaches the 50% share: a stay of
15,000 CNY out of pocket raises exactly one MEDIUM `MEDICAL_EXPENSE` alert, one per event. Each person has a
unique valid ID number (a module-wide counter over birth dates and sequence numbers), so tests never share a
person; household ids carry the test's prefix, so each test counts its own alerts.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.idcard import check_character
from plumbing.kafka_io import group_offsets, topic_end_offsets
from plumbing.processes import ChildProcess
from plumbing.settings import Settings
from schemas.codec import default_codec
from services.demo.population import FEED_HEADERS, ROSTER_HEADER
from services.demo.run import read_alerts
from services.monitor.app import stage_specs

VILLAGE = "652701101201"
_serial = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_id() -> str:
    """A fresh, valid 18-character ID number (never the same twice in a test session)."""
    n = next(_serial)
    born = dt.date(1960, 1, 1) + dt.timedelta(days=n // 400)
    first17 = f"652701{born:%Y%m%d}{(n % 400) * 2 + 1:03d}"
    return first17 + check_character(first17)


@dataclass
class Household:
    hid: str
    status: str = "监测中"
    members: list[str] = field(default_factory=list)  # ID numbers, the first is the 户主


def households(prefix: str, count: int, members: int = 2, status: str = "监测中") -> list[Household]:
    return [Household(f"{prefix}-{i:05d}", status, [new_id() for _ in range(members)]) for i in range(count)]


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8"))
    return path


def roster_file(path: Path, hhs: list[Household]) -> Path:
    rows = []
    for h in hhs:
        for i, number in enumerate(h.members):
            relation = "户主" if i == 0 else "子"
            sex = "男" if int(number[16]) % 2 else "女"
            rows.append([h.hid, f"测试{'甲乙丙丁'[i % 4]}", number, sex, relation, VILLAGE, "脱贫不稳定户", h.status,
                         "有劳动能力", "1000000", str(len(h.members))])
    return _csv(path, ROSTER_HEADER, rows)


def stays_file(path: Path, people: list[str], per_person: int = 1, first: dt.date = dt.date(2025, 1, 1)) -> Path:
    """`per_person` distinct hospitalisations of 15,000 CNY out of pocket for each ID number."""
    rows = []
    for k in range(per_person):
        day = first + dt.timedelta(days=3 * k)
        for number in people:
            rows.append(["测试", number, "肺炎", day.isoformat(), 5, "30000.00", "15000.00",
                         (day + dt.timedelta(days=5)).isoformat()])
    return _csv(path, FEED_HEADERS["hospitalization"], rows)


def vehicles_file(path: Path, people: list[str], day: dt.date = dt.date(2025, 3, 1)) -> Path:
    rows = [["测试", number, "小型轿车", "吉利 帝豪", day.isoformat(), (day + dt.timedelta(days=7)).isoformat(),
             "78000"] for number in people]
    return _csv(path, FEED_HEADERS["vehicle-purchase"], rows)


async def monitor_behind(settings: Settings) -> list[str]:
    """The partitions the monitor `settings.monitor_app_id` has not yet committed to their end, as "group
    topic[partition] committed/end": every stage's tables and inputs. A stage commits a batch only once its alerts,
    re-keyed events and state are acknowledged, so [] means every record on the broker has been read and judged,
    and everything it raised is on its topic (a replayed batch's duplicates too)."""
    late = []
    for spec in stage_specs(settings, default_codec()):
        ends = await topic_end_offsets(settings.bootstrap, [*spec.tables, *spec.inputs])
        done = await group_offsets(settings.bootstrap, spec.group)
        late += [f"{spec.group} {t}[{p}] {done.get((t, p), 0)}/{end}" for (t, p), end in sorted(ends.items())
                 if done.get((t, p), 0) < end]
    return late


class World:
    """The command line against the module's own broker, and the monitors it started."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.env = {"POVWATCH_BOOTSTRAP": settings.bootstrap, "POVWATCH_KAFKA_DATA": str(settings.kafka_data),
                    "POVWATCH_MONITOR_SWEEP_SECONDS": "0.5"}
        self.monitors: list[ChildProcess] = []

    def cli(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args],
                              env={**os.environ, **self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"povwatch {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def publish(self, department: str, feed: str, path: Path) -> dict[str, Any]:
        summary: dict[str, Any] = json.loads(self.cli("connector", "run", department, feed, str(path), "--json"))
        assert summary["rejected"] == 0, summary["rejects"][:3]
        return summary

    def roster(self, path: Path, *, delta: bool = True) -> dict[str, Any]:
        args = ["roster", "load", str(path), "--json"] + (["--delta"] if delta else [])
        result: dict[str, Any] = json.loads(self.cli(*args))
        return result

    def monitor(self, app_id: str, name: str, **extra: str) -> tuple[ChildProcess, int]:
        port = free_port()
        env = {**self.env, "POVWATCH_MONITOR_APP_ID": app_id, "POVWATCH_MONITOR_METRICS_PORT": str(port), **extra}
        child = ChildProcess(["monitor"], env=env, log_path=self.workdir / f"{name}.log")
        self.monitors.append(child)
        return child, port

    def alerts(self, prefix: str) -> list[dict[str, Any]]:
        """Every household alert of this test's households on the topic (duplicates included)."""
        found = asyncio.run(read_alerts(self.settings.bootstrap, idle=1.5))
        return [a for _, a in found if a.get("household_id", "").startswith(prefix)]

    def wait_alerts(self, prefix: str, distinct: int, *, timeout: float,
                    alive: Callable[[], bool] = lambda: True) -> list[dict[str, Any]]:
        """Poll the alert topic until `distinct` alert ids of this prefix are there (or fail with what is)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.alerts(prefix)
            if len({a["alert_id"] for a in seen}) >= distinct:
                return seen
            assert alive(), "a monitor died: " + "\n".join(m.tail(20) for m in self.monitors if not m.alive)
        got = Counter((a["rule"], a["severity"]) for a in seen)
        raise AssertionError(f"{len({a['alert_id'] for a in seen})} distinct alerts of {distinct} after "
                             f"{timeout:.0f}s ({dict(got)})\n" + "\n".join(m.tail(15) for m in self.monitors))

    def monitor_behind(self, app_id: str) -> list[str]:
        """`monitor_behind` for the monitor `app_id` on this world's broker."""
        return asyncio.run(monitor_behind(Settings(bootstrap=self.settings.bootstrap, monitor_app_id=app_id)))

    def wait_monitor_settled(self, app_id: str, monitor: ChildProcess, *, timeout: float = 60) -> None:
        """Poll until the monitor `app_id` has committed every partition it reads to its end (`monitor_behind`)."""
        deadline = time.monotonic() + timeout
        while late := self.monitor_behind(app_id):
            assert monitor.alive, f"the monitor died:\n{monitor.tail(20)}"
            assert time.monotonic() < deadline, (f"the monitor is still behind after {timeout:.0f}s: "
                                                 f"{', '.join(late[:6])}\n{monitor.tail(15)}")
            time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline

    def stop_all(self) -> None:
        for m in self.monitors:
            if m.alive:
                m.stop()
