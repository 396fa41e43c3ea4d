"""The monitor's stores (services/monitor/store.py) as the engine drives them: a batch changes records in place
and stores them back, its changes are settled once acknowledged, a failed batch rolls back; a restore loads
changelog records untracked. Both stores, the same story; the disk one on a real RocksDB."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.codec import default_codec
from services.monitor.app import HOUSEHOLD_ROWS, PERSON_ROWS
from services.monitor.handlers import PersonRow
from services.monitor.rules import HouseholdContext
from services.monitor.state import PERSON_STATE, Pending, PersonState
from services.monitor.store import MemoryStore, RocksStore, Store, open_store

CODEC = default_codec()
NOW = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
TOPIC = "events.medical-security.hospitalization"


def waiting(*ids: str) -> PersonState:
    return PersonState([Pending(TOPIC, i, b"m-" + i.encode(), NOW) for i in ids])


def encoded(state: PersonState) -> bytes | None:
    return None if state.empty else PERSON_STATE.encode(CODEC, state)


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_store(request.param, tmp_path, "group")
    yield made
    made.close()
    assert not (tmp_path / "group").exists() or not any((tmp_path / "group").iterdir())


def test_a_batch_settles_its_changes_and_a_failed_one_rolls_back(store: Store) -> None:
    state = store.state("person", 0, PERSON_STATE, CODEC)
    state.restore([("a", encoded(waiting("e1"))), ("b", encoded(waiting("e2"))), ("b", None),
                   ("c", encoded(waiting("e3")))])
    assert sorted(state) == ["a", "c"] and len(state) == 2 and state.take_dirty() == set()

    # a batch: changed in place and stored back, one deleted, one new
    a = state["a"]
    a.park(Pending(TOPIC, "e4", b"m", NOW))
    state["a"] = a
    del state["c"]
    state["d"] = waiting("e5")
    assert sorted(state) == ["a", "d"] and [p.event_id for p in state["a"].pending] == ["e1", "e4"]
    assert dict(state.items()).keys() == {"a", "d"}
    dirty = state.take_dirty()
    assert dirty == {"a", "c", "d"}
    state.settle([(k, None if k not in state else encoded(state[k])) for k in sorted(dirty)])
    assert sorted(state) == ["a", "d"] and len(state) == 2
    assert [p.event_id for p in state["a"].pending] == ["e1", "e4"]

    # a failed batch
    state["a"] = waiting("zzz")
    del state["d"]
    memory_like = not state.rollback()
    if memory_like:  # changed in place: the engine restores the partition from its changelog
        state = store.state("person", 0, PERSON_STATE, CODEC)
        state.restore([("a", encoded(waiting("e1", "e4"))), ("d", encoded(waiting("e5")))])
    assert sorted(state) == ["a", "d"] and [p.event_id for p in state["a"].pending] == ["e1", "e4"]
    assert state.take_dirty() == set()
    assert isinstance(store, MemoryStore) == memory_like


def test_an_empty_record_settled_as_a_tombstone_is_gone(store: Store) -> None:
    state = store.state("person", 1, PERSON_STATE, CODEC)
    state["k"] = waiting()
    state.settle([("k", None)])
    assert "k" not in state and state.get("k") is None and len(state) == 0
    with pytest.raises(KeyError):
        del state["k"]


def test_tables_keep_their_rows(store: Store) -> None:
    persons = store.table("person", 2, PERSON_ROWS)
    row = PersonRow("HH-1", "户主", dt.date(1970, 5, 6), "652701100201")
    persons["p1"] = row
    persons["p1"] = row
    assert persons["p1"] == row and persons.get("p2") is None and len(persons) == 1 and list(persons) == ["p1"]
    assert persons.pop("p1") == row and len(persons) == 0 and "p1" not in persons
    households = store.table("household", 2, HOUSEHOLD_ROWS)
    from decimal import Decimal

    household = HouseholdContext("HH-1", "652701100201", "监测中", Decimal("5230.50"), 4)
    households["HH-1"] = household
    assert households["HH-1"] == household
    assert store.table("village", 2, None) == {}


def test_disk_databases_go_with_their_partition(tmp_path: Path) -> None:
    store = RocksStore(tmp_path, "g")
    state = store.state("person", 0, PERSON_STATE, CODEC)
    state["a"] = waiting("e1")
    state.settle([("a", encoded(waiting("e1")))])
    assert any(store.root.iterdir())
    state.close()
    assert not any(store.root.iterdir())
    with pytest.raises(ValueError, match="unknown monitor store"):
        open_store("redis", tmp_path, "g")
