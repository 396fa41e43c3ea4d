"""The case feed's profile consumer without Kafka (services/casefeed/profile_feed.py handle_profiles) on a SQLite case
DB: profiles stored in order of their own clock, idempotent, tombstones, and every bad message dead-lettered with
its position (no name or ID number in a dead letter)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from schemas.codec import default_codec
from schemas.errors import DatabaseUnavailable
from services.casedb.database import open_database
from services.casedb.errors import RecordRefused
from services.casedb.models import HouseholdProfile
from services.casedb.store import CaseStore
from services.casefeed import profile_feed
from services.casefeed.profile_feed import DEAD_LETTER, ProfileMessage, handle_profiles, profiles_group

CODEC = default_codec()
NOW = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
T2 = T1 + dt.timedelta(hours=1)
TOPIC = "profiles.household"


def profile(household: str = "H-1", *, updated: dt.datetime = T1, income: str | None = "8200.00",
            village: str = "652701100201", damage: str = "SERIOUS") -> dict[str, Any]:
    return {"household_id": household, "village_code": village, "facts": [
        {"domain": "住房", "topic": "events.housing.house-safety", "department": "housing", "feed": "住房安全",
         "event_id": "ev-1", "person_key": "pk-1", "day": dt.date(2025, 6, 22),
         "values": {"damage": damage, "event_date": "2025-06-22"}}],
        "income_year": 2025 if income else None, "income_per_capita": Decimal(income) if income else None,
        "updated_at": updated}


def message(offset: int, value: bytes | None, key: bytes | None = b"H-1") -> ProfileMessage:
    return ProfileMessage(TOPIC, 0, offset, key, value)


def encoded(record: dict[str, Any]) -> bytes:
    return CODEC.encode("povwatch.profiles.HouseholdProfile", record)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{tmp_path / 'cases.db'}")
    yield s
    s.close()


def stored(store: CaseStore) -> dict[str, tuple[dt.datetime, Decimal | None, str]]:
    with Session(store.engine) as session:
        return {p.household_id: (p.updated_at, p.income_per_capita, p.facts[0]["values"]["damage"])
                for p in session.query(HouseholdProfile)}


def test_profiles_are_stored_in_order_of_their_own_clock(store: CaseStore) -> None:
    first = handle_profiles(store, [message(0, encoded(profile())),
                                    message(1, encoded(profile("H-2", village="652722100201")), b"H-2")], CODEC, NOW)
    assert (first.outcomes, first.letters) == (["stored", "stored"], [])
    again = handle_profiles(store, [message(0, encoded(profile()))], CODEC, NOW)  # redelivered
    assert again.outcomes == ["duplicate"]
    newer = encoded(profile(updated=T2, damage="COLLAPSED"))
    older = encoded(profile(updated=T1 - dt.timedelta(days=1), damage="MINOR"))
    batch = handle_profiles(store, [message(2, newer), message(3, older)], CODEC, NOW)
    assert batch.outcomes == ["replaced", "stale"]
    same_moment = encoded(profile(updated=T2, damage="NONE", income="9100"))
    assert handle_profiles(store, [message(4, same_moment)], CODEC, NOW).outcomes == ["replaced"]  # not older
    assert stored(store)["H-1"] == (T2, Decimal("9100.00"), "NONE")
    gone = handle_profiles(store, [message(5, None, b"H-2"), message(6, None, b"H-9")], CODEC, NOW)
    assert gone.outcomes == ["deleted", "absent"]
    assert set(stored(store)) == {"H-1"}
    assert profiles_group("povwatch-casefeed") == "povwatch-casefeed.profiles"


def test_bad_messages_are_dead_lettered_with_their_position(store: CaseStore) -> None:
    alert = b"\xc3\x01not-a-profile"
    bad_village = encoded(profile("H-3", village="6527011"))
    batch = handle_profiles(store, [message(10, alert), message(11, encoded(profile())), message(12, bad_village),
                                    message(13, None, None)], CODEC, NOW)
    assert batch.outcomes == [DEAD_LETTER, "stored", DEAD_LETTER, DEAD_LETTER]
    first, second, third = (letter.record for letter in batch.letters)
    assert first["message"] == {"topic": TOPIC, "partition": 0, "offset": 10} and first["stage"] == "casefeed"
    assert first["reasons"][0].startswith("undecodable: ")
    assert second["message"]["offset"] == 12 and second["fields"] == {"household_id": "H-3",
                                                                       "village_code": "6527011"}
    assert second["reasons"] == ["not a household profile: profile H-3: village_code must be a 12-digit village code"]
    assert third["reasons"] == ["a tombstone without a key: no household to delete"]
    assert [letter.key for letter in batch.letters] == [b"profiles.household:0:10", b"profiles.household:0:12",
                                                         b"profiles.household:0:13"]
    for letter in batch.letters:
        letter.encode(CODEC)  # each fits povwatch.DeadLetter
    assert set(stored(store)) == {"H-1"}


def test_a_profile_the_db_refuses_is_dead_lettered_and_the_others_stored(store: CaseStore,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = profile_feed.record_profiles

    def refusing(s: CaseStore, items: list[tuple[str, Any]]) -> list[str]:
        if any(key == "H-BAD" for key, _ in items):
            raise RecordRefused("the case database refuses the data: value too long")
        return real(s, items)

    monkeypatch.setattr(profile_feed, "record_profiles", refusing)
    batch = handle_profiles(store, [message(0, encoded(profile())), message(1, encoded(profile("H-BAD")), b"H-BAD"),
                                    message(2, encoded(profile("H-2")), b"H-2")], CODEC, NOW)
    assert batch.outcomes == ["stored", DEAD_LETTER, "stored"]
    [letter] = batch.letters
    assert letter.record["fields"]["household_id"] == "H-BAD"
    assert letter.record["reasons"] == ["refused by the case database: the case database refuses the data: "
                                        "value too long"]


def test_an_outage_propagates_with_nothing_decided(store: CaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(s: CaseStore, items: list[tuple[str, Any]]) -> list[str]:
        raise DatabaseUnavailable("case database: could not record household profiles: connection refused")

    monkeypatch.setattr(profile_feed, "record_profiles", down)
    with pytest.raises(DatabaseUnavailable):
        handle_profiles(store, [message(0, encoded(profile()))], CODEC, NOW)


def test_one_household_many_times_in_a_batch_ends_as_one_message_at_a_time(tmp_path: Path) -> None:
    """A batch is read in one SELECT and written in one flush (services/cases/profiles.py): a household added,
    replaced, made stale, deleted and added again within one batch gives what those messages give one by one."""
    def batch() -> list[ProfileMessage]:
        return [message(0, encoded(profile())), message(1, encoded(profile(updated=T2, damage="COLLAPSED"))),
                message(2, encoded(profile(updated=T1, damage="MINOR"))), message(3, None),
                message(4, encoded(profile(updated=T1, damage="NONE"))), message(5, encoded(profile("H-2")), b"H-2"),
                message(6, encoded(profile("H-2", updated=T2, income=None)), b"H-2"),
                message(7, encoded(profile("H-2", updated=T2, income=None)), b"H-2")]

    expected = ["stored", "replaced", "stale", "deleted", "stored", "stored", "replaced", "duplicate"]
    ends = []
    for name, sizes in (("alone", 1), ("together", 8)):
        store = open_database(f"sqlite:///{tmp_path / name}.db")
        try:
            messages = batch()
            outcomes = [o for start in range(0, len(messages), sizes)
                        for o in handle_profiles(store, messages[start:start + sizes], CODEC, NOW).outcomes]
            assert outcomes == expected
            ends.append(stored(store))
        finally:
            store.close()
    assert ends[0] == ends[1] == {"H-1": (T1, Decimal("8200.00"), "NONE"), "H-2": (T2, None, "SERIOUS")}
