"""Where a stage partition keeps its registry table and its state: in memory, or on disk in RocksDB.

The handlers see both as mappings (`MutableMapping[str, ...]`); the engine also needs of the state what the
batch changed (`take_dirty`), an untracked bulk load from the changelog (`restore`), the end of a batch
(`settle`: the changes written to the changelog and acknowledged) and the end of a failed one (`rollback`).

    memory   a dict per table, a `TrackedDict` per state: everything in the worker's memory. After a failed
             batch the state of a touched partition is stale (objects changed in place): `rollback` says so and
             the engine restores that partition from its changelog.
    rocksdb  one RocksDB database per table and per state under `<dir>/<group>/<worker token>/`, new when the
             partition is assigned (the topics stay the source of truth) and removed when it goes. A state keeps
             the records a batch reads or writes in a small overlay; `settle` writes the batch's encoded changes
             in one write batch and empties it, `rollback` just empties it: the database holds what the changelog
             acknowledged, so nothing is reloaded after a failed batch. Memory no longer grows with the
             population; only RocksDB's block cache and memtables (bounded) and the batch's overlay stay in memory.
"""
from __future__ import annotations

import itertools
import shutil
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from schemas.codec import Codec
from services.monitor.state import StateCodec

__all__ = ["TrackedDict", "StateStore", "TableCodec", "Store", "MemoryStore", "RocksStore", "open_store"]

S = TypeVar("S")
V = TypeVar("V")


class StateStore(MutableMapping[str, S]):
    """A partition's state as the engine drives it (the handlers only use the mapping)."""

    @abstractmethod
    def take_dirty(self) -> set[str]:
        """The keys assigned or deleted since the last call."""

    @abstractmethod
    def restore(self, records: Iterable[tuple[str, bytes | None]]) -> None:
        """Changelog records (key, encoded value or None for a tombstone), untracked."""

    @abstractmethod
    def settle(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        """The batch's changes, encoded (None: deleted), are acknowledged on the changelog."""

    @abstractmethod
    def rollback(self) -> bool:
        """The batch failed. True when the state is again what the changelog acknowledged; False when it is
        stale and must be restored from the changelog."""

    @abstractmethod
    def reset(self) -> None:
        """Empty, untracked (before a restore from the changelog)."""

    @abstractmethod
    def close(self) -> None:
        """Let go of what it holds (a disk store removes its database)."""


class TrackedDict(dict[str, S], StateStore[S]):  # dict first: its methods win
    """The memory store's state: a dict that remembers which keys were assigned or deleted since `take_dirty()`."""

    def __init__(self, codec: StateCodec[S] | None = None, avro: Codec | None = None) -> None:
        super().__init__()
        self.dirty: set[str] = set()
        self._codec = codec
        self._avro = avro

    def __setitem__(self, key: str, value: S) -> None:
        super().__setitem__(key, value)
        self.dirty.add(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.dirty.add(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.dirty.add(key)
        return super().pop(key, *default)

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def restore(self, records: Iterable[tuple[str, bytes | None]]) -> None:
        codec, avro = self._codec, self._avro
        assert codec is not None and avro is not None, "a restored TrackedDict is made with its codecs"
        for key, value in records:
            if value is None:
                dict.pop(self, key, None)
            else:
                dict.__setitem__(self, key, codec.decode(avro, value))

    def settle(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        for key, value in changes:
            if value is None:  # an empty record is written as a tombstone: it goes from memory too
                dict.pop(self, key, None)

    def rollback(self) -> bool:
        self.dirty.clear()
        return False

    def reset(self) -> None:
        dict.clear(self)
        self.dirty.clear()

    def close(self) -> None:
        self.reset()


@dataclass(frozen=True)
class TableCodec(Generic[V]):
    """How the disk store keeps one registry table's values (the memory store keeps the objects)."""

    encode: Callable[[V], bytes]
    decode: Callable[[bytes], V]


class Store(Protocol):
    """Makes the table and the state of one assigned partition."""

    def table(self, stage: str, partition: int, codec: TableCodec[Any] | None) -> MutableMapping[str, Any]: ...

    def state(self, stage: str, partition: int, codec: StateCodec[S], avro: Codec) -> StateStore[S]: ...

    def close(self) -> None: ...


class MemoryStore:
    def table(self, stage: str, partition: int, codec: TableCodec[Any] | None) -> MutableMapping[str, Any]:
        return {}

    def state(self, stage: str, partition: int, codec: StateCodec[S], avro: Codec) -> StateStore[S]:
        return TrackedDict(codec, avro)

    def close(self) -> None:
        pass


def _open(path: Path) -> Any:
    from rocksdict import Options, Rdict, WriteOptions

    shutil.rmtree(path, ignore_errors=True)  # what a partition held before is rebuilt from its topics
    path.parent.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(16 * 1024 * 1024)
    db = Rdict(str(path), options)
    quick = WriteOptions()
    quick.disable_wal = True  # type: ignore[method-assign,assignment]  # an attribute, whatever the stub says: the
    # database is wiped at every assignment, so it needs no write-ahead log to survive a crash
    db.set_write_options(quick)
    return db


class _RocksTable(MutableMapping[str, V]):
    """A registry table in RocksDB: values encoded by the table's codec, written through."""

    def __init__(self, path: Path, codec: TableCodec[V]) -> None:
        self._path = path
        self._db = _open(path)
        self._codec = codec
        self._count = 0

    def __getitem__(self, key: str) -> V:
        raw = self._db.get(key.encode())
        if raw is None:
            raise KeyError(key)
        return self._codec.decode(raw)

    def get(self, key: str, default: Any = None) -> Any:  # one lookup, not two (a miss is common)
        raw = self._db.get(key.encode())
        return default if raw is None else self._codec.decode(raw)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._db.get(key.encode()) is not None

    def __setitem__(self, key: str, value: V) -> None:
        raw = key.encode()
        if self._db.get(raw) is None:
            self._count += 1
        self._db.put(raw, self._codec.encode(value))

    def __delitem__(self, key: str) -> None:
        raw = key.encode()
        if self._db.get(raw) is None:
            raise KeyError(key)
        self._db.delete(raw)
        self._count -= 1

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self._db.keys())

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._path, ignore_errors=True)


_GONE: Any = object()


class _RocksState(StateStore[S]):
    """A partition's state in RocksDB, with the batch's records in an overlay until `settle` or `rollback`."""

    def __init__(self, path: Path, codec: StateCodec[S], avro: Codec) -> None:
        self._path = path
        self._db = _open(path)
        self._codec = codec
        self._avro = avro
        self._overlay: dict[str, Any] = {}  # records read or written by the batch in flight (_GONE: deleted)
        self._dirty: set[str] = set()
        self._count = 0

    def _load(self, key: str) -> Any:
        found = self._overlay.get(key)
        if found is None:
            raw = self._db.get(key.encode())
            # kept in the overlay: a handler changes the object it read and stores it back
            found = self._overlay[key] = _GONE if raw is None else self._codec.decode(self._avro, raw)
        return found

    def __getitem__(self, key: str) -> S:
        found = self._load(key)
        if found is _GONE:
            raise KeyError(key)
        return found  # type: ignore[no-any-return]

    def get(self, key: str, default: Any = None) -> Any:
        found = self._load(key)
        return default if found is _GONE else found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._load(key) is not _GONE

    def __setitem__(self, key: str, value: S) -> None:
        self._overlay[key] = value
        self._dirty.add(key)

    def __delitem__(self, key: str) -> None:
        if self._load(key) is _GONE:
            raise KeyError(key)
        self._overlay[key] = _GONE
        self._dirty.add(key)

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay
        for raw in self._db.keys():
            key = raw.decode()
            if overlay.get(key) is not _GONE:
                yield key
        for key, value in list(overlay.items()):
            if value is not _GONE and self._db.get(key.encode()) is None:
                yield key

    def items(self) -> Iterator[tuple[str, S]]:  # type: ignore[override]  # one pass, nothing kept in the overlay
        overlay = self._overlay
        for raw_key, raw in self._db.items():
            key = raw_key.decode()
            held = overlay.get(key)
            if held is None:
                yield key, self._codec.decode(self._avro, raw)
            elif held is not _GONE:
                yield key, held
        for key, held in list(overlay.items()):
            if held is not _GONE and self._db.get(key.encode()) is None:
                yield key, held

    def values(self) -> Iterator[S]:  # type: ignore[override]
        return (value for _, value in self.items())

    def __len__(self) -> int:
        return self._count

    def take_dirty(self) -> set[str]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    def restore(self, records: Iterable[tuple[str, bytes | None]]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        db = self._db
        held: dict[bytes, bool] = {}  # whether a key exists after the write batch so far (unwritten yet)
        for key, value in records:
            raw = key.encode()
            # counted exactly: the changelog repeats keys until compacted
            known = held[raw] if raw in held else db.get(raw) is not None
            if value is None:
                if known:
                    batch.delete(raw)
                    self._count -= 1
            else:
                batch.put(raw, value)
                self._count += 0 if known else 1
            held[raw] = value is not None
            if batch.len() >= 10_000:
                db.write(batch)
                batch = WriteBatch(raw_mode=True)
                held.clear()
        if batch.len():
            db.write(batch)

    def settle(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        self.restore(changes)
        self._overlay.clear()

    def rollback(self) -> bool:
        self._overlay.clear()
        self._dirty.clear()
        return True

    def reset(self) -> None:
        self._overlay.clear()
        self._dirty.clear()
        self._db.close()
        self._db = _open(self._path)
        self._count = 0

    def close(self) -> None:
        self._overlay.clear()
        self._db.close()
        shutil.rmtree(self._path, ignore_errors=True)


class RocksStore:
    """RocksDB databases under `<root>/<group>/<worker token>/` (two workers on one host never share one)."""

    def __init__(self, root: Path, group: str) -> None:
        self.root = root / group / uuid.uuid4().hex[:12]
        self._serial = itertools.count()  # a partition revoked mid-restore may come back before its old one closes

    def table(self, stage: str, partition: int, codec: TableCodec[Any] | None) -> MutableMapping[str, Any]:
        if codec is None:  # a stage without a registry table (the village stage)
            return {}
        return _RocksTable(self.root / f"{stage}-{partition}-table-{next(self._serial)}", codec)

    def state(self, stage: str, partition: int, codec: StateCodec[S], avro: Codec) -> StateStore[S]:
        return _RocksState(self.root / f"{stage}-{partition}-state-{next(self._serial)}", codec, avro)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def open_store(kind: str, directory: Path, group: str) -> Store:
    """The store a setting names: `memory` or `rocksdb` (under `directory`)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "rocksdb":
        return RocksStore(directory, group)
    raise ValueError(f"unknown monitor store {kind!r} (expected memory or rocksdb)")
