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
