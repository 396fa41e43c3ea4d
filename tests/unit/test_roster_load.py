"""connectors.departments.bureau.load_snapshot without a broker: real roster files, the real codec, and compacted
topics in memory (latest value per key, a tombstone removes the key). What the summary says, what is sent, what
the topics hold afterwards; the safety rules (rejected-but-known people kept, an empty snapshot refused)."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors.departments.bureau import ROW_INVARIANT, RosterSummary, load_snapshot
from connectors.pseudonym import Pseudonymiser
from connectors.snapshot import content_of
from schemas.codec import default_codec
from schemas.errors import InputFileError
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS
from tests.unit.doubles import FIXED_NOW, TEST_KEY, fixed_clock, make_id, write_csv
from tests.unit.test_framework import ROSTER_HEADER, person_key, roster_row

CODEC = default_codec()
HEAD1 = make_id("652701", "19680305", 11)  # man
WIFE1 = make_id("652701", "19700811", 22)  # woman
SON1 = make_id("652701", "19950120", 33)  # man
HEAD2 = make_id("652722", "19550101", 44)  # woman
HEAD3 = make_id("652722", "19600101", 55)  # man
NAMES = ["王建国", "李秀兰", "王小军", "马桂英", "张三"]


@dataclass
class MemoryTopics:
    """Compacted topics in memory, and every send in order: the Kafka side of a roster load."""

    topics: dict[str, dict[bytes, bytes]] = field(default_factory=lambda: {REGISTRY_PERSONS: {},
                                                                             REGISTRY_HOUSEHOLDS: {}})
    log: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)
    entered: int = 0
    flushes: int = 0

    async def __aenter__(self) -> MemoryTopics:
        self.entered += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.log.append((topic, key, value))
        self.topics.setdefault(topic, {})[key] = value

    async def tombstone(self, topic: str, key: bytes) -> None:
        self.log.append((topic, key, None))
        self.topics.setdefault(topic, {}).pop(key, None)

    async def flush(self) -> None:
        self.flushes += 1

    async def read(self, topic: str) -> dict[bytes, bytes]:
        return dict(self.topics[topic])

    def content(self, topic: str) -> dict[bytes, dict[str, Any]]:
        return {k: content_of(CODEC.decode(v).record) for k, v in self.topics[topic].items()}

    def registry_sends(self) -> list[tuple[str, bytes, bytes | None]]:
        return [m for m in self.log if m[0] in (REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS)]


def load(tmp_path: Path, kafka: MemoryTopics, rows: Sequence[Sequence[str]], *, delta: bool = False,
         now: dt.datetime = FIXED_NOW, name: str = "roster.csv") -> RosterSummary:
    path = write_csv(tmp_path / name, [ROSTER_HEADER, *rows])
    kafka.log.clear()
    summary = asyncio.run(load_snapshot(path, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC,
                                        clock=fixed_clock(now), read_state=kafka.read,
                                        publisher_factory=lambda: kafka, delta=delta))
    assert summary.balanced and summary.read == summary.published + summary.unchanged + summary.rejected + \
        summary.duplicates
    assert summary.published == summary.persons.counts()["added"] + summary.persons.counts()["changed"]
    assert summary.unchanged == summary.persons.counts()["unchanged"]
    for _, key, value in kafka.log:  # no name and no raw ID number leaves
        text = key.decode("utf-8", "ignore") + (value or b"").decode("utf-8", "ignore")
        assert not any(secret in text for secret in [*NAMES, HEAD1, WIFE1, SON1, HEAD2, HEAD3])
    return summary


def k(id_number: str) -> bytes:
    return person_key(id_number).encode()


FIRST = [
    roster_row("H1", "王建国", HEAD1, "男", "户主"),
    roster_row("H1", "李秀兰", WIFE1, "女", "配偶"),
    roster_row("H1", "王小军", SON1, "男", "子"),
    roster_row("H2", "马桂英", HEAD2, "女", "户主", size="1"),
    roster_row("H3", "张三", HEAD3, "男", "户主", size="1"),
]


def test_first_load_adds_everyone(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    summary = load(tmp_path, kafka, FIRST)
    assert (summary.read, summary.published, summary.unchanged, summary.rejected) == (5, 5, 0, 0)
    assert summary.persons.counts()["added"] == 5 and summary.households.counts()["added"] == 3
    assert set(kafka.topics[REGISTRY_PERSONS]) == {k(i) for i in (HEAD1, WIFE1, SON1, HEAD2, HEAD3)}
    assert set(kafka.topics[REGISTRY_HOUSEHOLDS]) == {b"H1", b"H2", b"H3"}
    # households before persons, each step flushed
    assert [t for t, _, _ in kafka.registry_sends()] == [REGISTRY_HOUSEHOLDS] * 3 + [REGISTRY_PERSONS] * 5
    d = summary.as_dict()
    assert d["invariant"] == ROW_INVARIANT and d["mode"] == "snapshot" and d["tombstones"] == 0
    assert d["extra_messages"] == 3 and d["unchanged"] == 0


def test_reloading_the_same_file_later_sends_nothing(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, FIRST, now=FIXED_NOW + dt.timedelta(days=40), name="roster-august.csv")
    assert (summary.read, summary.published, summary.unchanged) == (5, 0, 5)
    assert summary.households.counts()["unchanged"] == 3 and summary.tombstones == 0
    assert kafka.log == []


def test_second_snapshot_moves_changes_and_removes(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    before = kafka.content(REGISTRY_PERSONS)
    summary = load(tmp_path, kafka, [
        roster_row("H1", "王建国", HEAD1, "男", "户主", size="2"),
        roster_row("H1", "李秀兰", WIFE1, "女", "配偶", size="2"),
        roster_row("H2", "马桂英", HEAD2, "女", "户主", size="2", status="风险消除"),
        roster_row("H2", "王小军", SON1, "男", "其他", size="2", status="风险消除"),  # moved to H2
    ])  # H3 and its only member are gone
    assert summary.persons.counts() == {"added": 0, "changed": 1, "removed": 1, "unchanged": 3,
                                        "kept_row_rejected": 0, "kept_not_in_file": 0}
    assert summary.households.counts() == {"added": 0, "changed": 2, "removed": 1, "unchanged": 0,
                                           "kept_row_rejected": 0, "kept_not_in_file": 0}
    assert (summary.read, summary.published, summary.unchanged, summary.tombstones) == (4, 1, 3, 2)
    assert kafka.registry_sends() == [
        (REGISTRY_HOUSEHOLDS, b"H1", kafka.topics[REGISTRY_HOUSEHOLDS][b"H1"]),
        (REGISTRY_HOUSEHOLDS, b"H2", kafka.topics[REGISTRY_HOUSEHOLDS][b"H2"]),
        (REGISTRY_PERSONS, k(SON1), kafka.topics[REGISTRY_PERSONS][k(SON1)]),
        (REGISTRY_PERSONS, k(HEAD3), None),
        (REGISTRY_HOUSEHOLDS, b"H3", None),
    ]
    after = kafka.content(REGISTRY_PERSONS)
    assert after[k(SON1)] == {**before[k(SON1)], "household_id": "H2", "relation": "其他"}
    assert {key: after[key] for key in after if key != k(SON1)} == {
        key: before[key] for key in before if key not in (k(SON1), k(HEAD3))}
    households = kafka.content(REGISTRY_HOUSEHOLDS)
    assert set(households) == {b"H1", b"H2"}
    assert households[b"H2"]["monitoring_status"] == "RISK_ELIMINATED" and households[b"H2"]["household_size"] == 2


def test_delta_upserts_and_removes_nobody(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [roster_row("H2", "马桂英", HEAD2, "女", "户主", size="1", status="风险消除")],
                   delta=True)
    assert summary.mode == "delta" and summary.tombstones == 0
    assert summary.persons.counts() == {"added": 0, "changed": 0, "removed": 0, "unchanged": 1,
                                        "kept_row_rejected": 0, "kept_not_in_file": 4}
    assert summary.households.counts() == {"added": 0, "changed": 1, "removed": 0, "unchanged": 0,
                                           "kept_row_rejected": 0, "kept_not_in_file": 2}
    assert [(t, key) for t, key, _ in kafka.registry_sends()] == [(REGISTRY_HOUSEHOLDS, b"H2")]
    assert len(kafka.topics[REGISTRY_PERSONS]) == 5 and len(kafka.topics[REGISTRY_HOUSEHOLDS]) == 3


def test_rejected_row_with_a_valid_id_keeps_the_person_and_household(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [
        *FIRST[:4],
        roster_row("H3", "张三", HEAD3, "女", "户主", size="1"),  # sex contradicts the ID number: rejected
    ])
    assert summary.rejects == [(6, ("sex: does not match the sex encoded in the ID number",))]
    assert summary.persons.counts()["kept_row_rejected"] == 1 and summary.persons.counts()["removed"] == 0
    assert summary.households.counts()["kept_row_rejected"] == 1 and summary.households.counts()["removed"] == 0
    assert k(HEAD3) in kafka.topics[REGISTRY_PERSONS] and b"H3" in kafka.topics[REGISTRY_HOUSEHOLDS]
    assert kafka.registry_sends() == []
    assert [t for t, _, _ in kafka.log] == ["dlq.bureau"]


def test_rejected_by_the_household_checks_also_keeps_the_person(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [
        *FIRST[:4],
        roster_row("H2", "张三", HEAD3, "男", "户主", size="1"),  # a second 户主 of H2: rejected by the handler
    ])
    assert summary.rejects == [(6, ("relation: household H2 already has a 户主 on row 5",))]
    assert summary.persons.counts()["kept_row_rejected"] == 1
    assert summary.households.counts()["kept_row_rejected"] == 1  # H3, where the person is on the topic
    assert kafka.content(REGISTRY_PERSONS)[k(HEAD3)]["household_id"] == "H3"


def test_rejected_row_with_an_invalid_id_cannot_keep_anyone(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [*FIRST[:4], roster_row("H3", "张三", HEAD3[:-1] + "0", "男", "户主")])
    assert summary.rejected == 1
    assert summary.persons.counts()["removed"] == 1 and summary.persons.counts()["kept_row_rejected"] == 0
    assert k(HEAD3) not in kafka.topics[REGISTRY_PERSONS] and b"H3" not in kafka.topics[REGISTRY_HOUSEHOLDS]


@pytest.mark.parametrize("rows", [
    [],  # header only
    [roster_row("H1", "王建国", HEAD1, "女", "户主"), roster_row("H1", "李秀兰", "12345", "女", "配偶")],
])
def test_a_snapshot_without_a_valid_row_is_refused(tmp_path: Path, rows: list[list[str]]) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    kafka.log.clear()
    path = write_csv(tmp_path / "empty.csv", [ROSTER_HEADER, *rows])
    with pytest.raises(InputFileError, match=r"^empty.csv: no valid row \(\d read, \d rejected\); a snapshot "
                                             r"without anyone would remove the whole roster") as error:
        asyncio.run(load_snapshot(path, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=fixed_clock(),
                                  read_state=kafka.read, publisher_factory=lambda: kafka))
    assert "\n" not in str(error.value)
    assert kafka.log == [] and kafka.entered == 1  # nothing sent; the publisher was not even opened again
    assert len(kafka.topics[REGISTRY_PERSONS]) == 5


def test_delta_without_a_valid_row_only_dead_letters(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [roster_row("H1", "王建国", HEAD1, "女", "户主")], delta=True)
    assert (summary.read, summary.published, summary.rejected) == (1, 0, 1)
    assert [t for t, _, _ in kafka.log] == ["dlq.bureau"]
    assert len(kafka.topics[REGISTRY_PERSONS]) == 5


def test_duplicates_and_rejects_keep_the_row_invariant(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [
        *FIRST,
        FIRST[0],  # an exact duplicate
        roster_row("H4", "王某某", make_id("652701", "19800101", 77), "女", "户主"),  # sex wrong: rejected
        roster_row("H4", "王某某", make_id("652701", "19800101", 79), "男", "户主", size="1"),  # added
    ])
    assert (summary.read, summary.published, summary.unchanged, summary.rejected, summary.duplicates) == (8, 1, 5, 1, 1)
    assert summary.persons.counts()["added"] == 1 and summary.households.counts()["added"] == 1


def test_an_undecodable_record_on_the_topic_is_overwritten(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    kafka.topics[REGISTRY_PERSONS][k(HEAD1)] = b"not avro"
    summary = load(tmp_path, kafka, FIRST)
    assert summary.persons.counts()["changed"] == 1 and summary.published == 1
    assert CODEC.decode(kafka.topics[REGISTRY_PERSONS][k(HEAD1)]).name == "povwatch.registry.Person"


def test_a_household_whose_head_row_is_rejected_keeps_its_head(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [
        roster_row("H1", "王建国", HEAD1, "女", "户主"),  # sex contradicts the ID number: rejected
        *FIRST[1:],
    ])
    assert summary.rejected == 1 and summary.persons.counts()["kept_row_rejected"] == 1
    assert summary.households.counts() == {"added": 0, "changed": 0, "removed": 0, "unchanged": 3,
                                           "kept_row_rejected": 0, "kept_not_in_file": 0}
    assert kafka.registry_sends() == []
    assert kafka.content(REGISTRY_HOUSEHOLDS)[b"H1"]["head_person_key"] == person_key(HEAD1)


def test_a_household_whose_new_head_is_valid_takes_it(tmp_path: Path) -> None:
    kafka = MemoryTopics()
    load(tmp_path, kafka, FIRST)
    summary = load(tmp_path, kafka, [  # the head has left; the wife is the new 户主
        roster_row("H1", "李秀兰", WIFE1, "女", "户主"), FIRST[2], *FIRST[3:]])
    assert summary.persons.counts()["removed"] == 1 and summary.households.counts()["changed"] == 1
    assert kafka.content(REGISTRY_HOUSEHOLDS)[b"H1"]["head_person_key"] == person_key(WIFE1)
