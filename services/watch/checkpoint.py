"""The watch service's local state: one SQLite file, each write one transaction (atomic, durable on commit).

Per file being processed: the last row the broker acknowledged, and where the topics stood (per partition, the
offset after the last message acknowledged, or the end offset when the file was started). Per SQL source: its
cursor (connectors.sources.sql.Cursor) and the same offsets. A checkpoint is written only after the broker has
acknowledged everything up to it; what was sent after it and reached the topics is found again by reading the
topics from those offsets (services.watch.readback), so a restart after a SIGKILL neither loses nor repeats.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from connectors.sources.sql import Cursor, decode_value, encode_value
from schemas.errors import ConfigError

__all__ = ["Offsets", "FileMark", "SqlMark", "StateStore", "merge_offsets"]

Offsets = dict[tuple[str, int], int]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (key TEXT PRIMARY KEY, row INTEGER NOT NULL, offsets TEXT NOT NULL,
                                  updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL, offsets TEXT NOT NULL,
                                    updated REAL NOT NULL);
"""


@dataclass(frozen=True)
class FileMark:
    row: int
    offsets: Offsets


@dataclass(frozen=True)
class SqlMark:
    cursor: Cursor
    offsets: Offsets


def merge_offsets(base: Mapping[tuple[str, int], int], acked: Mapping[tuple[str, int], int]) -> Offsets:
    out = dict(base)
    for tp, offset in acked.items():
        out[tp] = max(offset, out.get(tp, 0))
    return out


def _offsets_json(offsets: Mapping[tuple[str, int], int]) -> str:
    return json.dumps(sorted([t, p, o] for (t, p), o in offsets.items()))


def _offsets(text: str) -> Offsets:
    return {(t, int(p)): int(o) for t, p, o in json.loads(text)}


class StateStore:
    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the state file {path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def file(self, key: str) -> FileMark | None:
        row = self._db.execute("SELECT row, offsets FROM files WHERE key = ?", (key,)).fetchone()
        return FileMark(int(row[0]), _offsets(row[1])) if row else None

    def save_file(self, key: str, mark: FileMark) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                             (key, mark.row, _offsets_json(mark.offsets), time.time()))

    def forget_file(self, key: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM files WHERE key = ?", (key,))

    def file_keys(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT key FROM files")]

    def sql(self, name: str) -> SqlMark | None:
        row = self._db.execute("SELECT cursor, offsets FROM cursors WHERE name = ?", (name,)).fetchone()
        if not row:
            return None
        c = json.loads(row[0])
        return SqlMark(Cursor(decode_value(c["updated"]), decode_value(c["key"]), int(c["rows"])), _offsets(row[1]))

    def save_sql(self, name: str, mark: SqlMark) -> None:
        c = mark.cursor
        cursor = json.dumps({"updated": encode_value(c.updated), "key": encode_value(c.key), "rows": c.rows})
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?)",
                             (name, cursor, _offsets_json(mark.offsets), time.time()))
