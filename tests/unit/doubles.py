"""Test doubles that are real code: an in-memory publisher, a fixed clock, ID numbers with valid check characters."""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.idcard import check_character

FIXED_NOW = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
TEST_KEY = b"unit-test-pseudonym-key-32-bytes"


def fixed_clock(now: dt.datetime = FIXED_NOW) -> Any:
    """A clock that always says `now`."""
    return lambda: now


def make_id(county: str, born: str, serial: int) -> str:
    """18-character ID number with a valid check character; the serial's last digit is odd for a man."""
    first17 = f"{county}{born}{serial:03d}"
    return first17 + check_character(first17)


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes
    value: bytes


@dataclass
class MemoryPublisher:
    """The Publisher contract, in memory: an async context manager that records every send."""

    sent: list[Sent] = field(default_factory=list)
    entered: int = 0
    exited: int = 0
    flushes: int = 0

    async def __aenter__(self) -> MemoryPublisher:
        self.entered += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.exited += 1

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        assert isinstance(key, bytes) and isinstance(value, bytes)
        self.sent.append(Sent(topic, key, value))

    async def flush(self) -> None:
        self.flushes += 1

    def on(self, topic: str) -> list[Sent]:
        return [m for m in self.sent if m.topic == topic]


def write_csv(path: Path, rows: Iterable[Sequence[str]], encoding: str = "utf-8") -> Path:
    """A CSV as Excel writes it (quoted where needed, CRLF line ends) in the given encoding."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path
