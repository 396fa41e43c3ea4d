"""The roster as a full snapshot, on the real broker, driven through `povwatch roster load` as an operator runs it.

The tests run in file order and share the registry topics: a first roster; a second snapshot (one household
gone, one person moved, one 监测状态 changed, the rest as it was); the same file again; a partial file with
`--delta`; two loads interrupted part-way (by the lower-level `load_snapshot` with a publisher that stops after
N messages) and re-run; an empty snapshot refused. After each, both topics are read back with the plain
`read_topic` (tombstones applied here) and compared with what the file says, field by field.

The registry topics are shared with the other integration modules of the session: this module tombstones
whatever they hold before it starts and everything it wrote when it ends.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.departments.bureau import load_snapshot
from connectors.pseudonym import Pseudonymiser
from plumbing.kafka_io import KafkaPublisher, read_compacted, read_topic, topic_end_offsets
from schemas.codec import default_codec
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS, dlq_topic
from tests.integration.scenario import make_id
from tests.unit.doubles import write_csv

pytestmark = pytest.mark.integration

KEY = "integration-roster-snapshot-key-0001"
CODEC = default_codec()
HEADER = ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态", "劳动能力",
          "上年人均纯收入", "家庭人口数"]
VILLAGE_A, VILLAGE_B = "652701101201", "652722102203"
REGISTRY = [REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS]
KILLED_HOUSEHOLDS = 20_000  # one person each: large enough that the load is still publishing when it is killed


# --- the population, and what the topics must hold for a file -----------------------------------------------------

@dataclass(frozen=True)
class Member:
    name: str
    id: str
    relation: str
    male: bool


@dataclass(frozen=True)
class House:
    hid: str
    village: str
    category: str
    status: str
    labour: str
    income: str
    members: tuple[Member, ...]


_serial = iter(range(1, 100))


def member(name: str, relation: str, born: str, male: bool, county: str = "652701") -> Member:
    return Member(name, make_id(county, born, next(_serial), male), relation, male)


HEAD1, WIFE1, SON1 = (member("艾力江", "户主", "19750302", True), member("古丽娜", "配偶", "19780611", False),
                      member("买买提", "子", "20080901", True))
HEAD2, DAUGHTER2 = member("马桂英", "户主", "19620505", False), member("马小花", "女", "19900606", False)
HEAD3 = member("巴特尔", "户主", "19690808", True, "652722")
HEAD4, WIFE4 = member("张伟", "户主", "19700101", True, "652722"), member("刘芳", "配偶", "19720202", False, "652722")
HEAD5, SON5 = member("王秀兰", "户主", "19580303", False), member("王小军", "子", "19850404", True)
EVERYONE = [HEAD1, WIFE1, SON1, HEAD2, DAUGHTER2, HEAD3, HEAD4, WIFE4, HEAD5, SON5]


def house(hid: str, members: tuple[Member, ...], *, village: str = VILLAGE_A, status: str = "监测中",
          category: str = "脱贫不稳定户", labour: str = "有劳动能力", income: str = "8000") -> House:
    return House(hid, village, category, status, labour, income, members)


FIRST = [
    house("SN-01", (HEAD1, WIFE1, SON1)),
    house("SN-02", (HEAD2, DAUGHTER2), category="边缘易致贫户", income="6,500.50"),
    house("SN-03", (HEAD3,), village=VILLAGE_B, labour="弱劳动能力", income="4200"),
    house("SN-04", (HEAD4, WIFE4), village=VILLAGE_B, income="10000"),
    house("SN-05", (HEAD5, SON5), status="风险消除", category="脱贫户", income="9000"),
]
# SN-03 is gone; 买买提 has moved from SN-01 to SN-02 (both sizes change); SN-04 is no longer watched (风险消除);
# SN-05 and its people are as they were.
SON1_MOVED = Member(SON1.name, SON1.id, "其他", True)
SECOND = [
    house("SN-01", (HEAD1, WIFE1)),
    house("SN-02", (HEAD2, DAUGHTER2, SON1_MOVED), category="边缘易致贫户", income="6,500.50"),
    house("SN-04", (HEAD4, WIFE4), village=VILLAGE_B, income="10000", status="风险消除"),
    house("SN-05", (HEAD5, SON5), status="风险消除", category="脱贫户", income="9000"),
]
DELTA = [house("SN-04", (HEAD4, WIFE4), village=VILLAGE_B, income="10000")]  # back to 监测中; nobody else listed

CATEGORY = {"脱贫不稳定户": "UNSTABLE_LIFTED", "边缘易致贫户": "MARGINAL", "脱贫户": "LIFTED"}
STATUS = {"监测中": "MONITORING", "风险消除": "RISK_ELIMINATED"}
LABOUR = {"有劳动能力": "ABLE", "弱劳动能力": "WEAK"}


def pkey(id_number: str) -> str:
    return hmac.new(KEY.encode(), id_number.encode("ascii"), hashlib.sha256).hexdigest()


def write_roster(path: Path, houses: list[House], encoding: str = "utf-8-sig") -> Path:
    rows = [[h.hid, m.name, m.id, "男" if m.male else "女", m.relation, h.village, h.category, h.status, h.labour,
             h.income, str(len(h.members))] for h in houses for m in h.members]
    return write_csv(path, [HEADER, *rows], encoding=encoding)


def expected_persons(houses: list[House]) -> dict[bytes, dict[str, Any]]:
    return {pkey(m.id).encode(): {
        "person_key": pkey(m.id), "household_id": h.hid, "relation": m.relation, "sex": "M" if m.male else "F",
        "birth_date": dt.date(int(m.id[6:10]), int(m.id[10:12]), int(m.id[12:14])), "village_code": h.village,
    } for h in houses for m in h.members}


def expected_households(houses: list[House]) -> dict[bytes, dict[str, Any]]:
    return {h.hid.encode(): {
        "household_id": h.hid, "village_code": h.village,
        "head_person_key": next(pkey(m.id) for m in h.members if m.relation == "户主"),
        "category": CATEGORY[h.category], "monitoring_status": STATUS[h.status], "labour_capacity": LABOUR[h.labour],
        "per_capita_income": Decimal(h.income.replace(",", "")).quantize(Decimal("0.01")),
        "household_size": len(h.members),
    } for h in houses}


# --- reading the broker -------------------------------------------------------------------------------------------

async def _read_back(bootstrap: str, topic: str) -> dict[bytes, dict[str, Any]]:
    """The topic's contents, read with the plain reader: the latest value per key, an empty value (a tombstone:
    read_topic gives b"" for null) removes the key. Provenance is dropped here by name."""
    out: dict[bytes, dict[str, Any]] = {}
    last: dict[int, int] = {}
    async for rec in read_topic(bootstrap, [topic], idle_timeout=2.0):
        assert rec.key is not None
        last[rec.partition] = rec.offset
        if rec.value:
            record = CODEC.decode(rec.value).record
            out[rec.key] = {k: v for k, v in record.items() if k not in ("ingested_at", "source")}
        else:
            out.pop(rec.key, None)
    ends = await topic_end_offsets(bootstrap, [topic])  # read to the end, not just until a quiet moment
    assert {p: end for (_, p), end in ends.items() if end > 0} == {p: offset + 1 for p, offset in last.items()}
    return out


def read_back(bootstrap: str) -> tuple[dict[bytes, dict[str, Any]], dict[bytes, dict[str, Any]]]:
    return asyncio.run(_read_back(bootstrap, REGISTRY_PERSONS)), asyncio.run(_read_back(bootstrap, REGISTRY_HOUSEHOLDS))


def assert_topics_hold(bootstrap: str, houses: list[House]) -> None:
    persons, households = read_back(bootstrap)
    assert persons == expected_persons(houses)
    assert households == expected_households(houses)


def ends(bootstrap: str) -> dict[tuple[str, int], int]:
    return asyncio.run(topic_end_offsets(bootstrap, [*REGISTRY, dlq_topic("bureau")]))


async def _kill_once_publishing(child: subprocess.Popen[bytes], bootstrap: str, start: dict[tuple[str, int], int],
                                timeout: float) -> None:
    """SIGKILL `child` as soon as the registry topics grow past `start` (one consumer asked every 10 ms: a new
    client per look takes long enough for a small load to finish unseen), or when `timeout` passes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # so partitions_for_topic() answers
        tps = [TopicPartition(t, p) for t in REGISTRY for p in sorted(consumer.partitions_for_topic(t) or ())]
        deadline = asyncio.get_running_loop().time() + timeout
        while child.poll() is None and asyncio.get_running_loop().time() < deadline:
            now = await consumer.end_offsets(tps)
            if any(end > start.get((tp.topic, tp.partition), 0) for tp, end in now.items()):
                break
            await asyncio.sleep(0.01)  # sleep-ok: the polling interval of a wait with a deadline
        child.kill()
    finally:
        await consumer.stop()


async def _tombstone_everything(bootstrap: str) -> None:
    async with KafkaPublisher(bootstrap) as publisher:
        for topic in REGISTRY:
            for key in await read_compacted(bootstrap, topic):
                await publisher.tombstone(topic, key)


# --- the command line -----------------------------------------------------------------------------------------------

@dataclass
class Roster:
    bootstrap: str
    files: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "POVWATCH_BOOTSTRAP": self.bootstrap, "POVWATCH_PSEUDONYM_KEY": KEY}
        return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    def load(self, path: Path, *flags: str) -> dict[str, Any]:
        done = self.cli("roster", "load", str(path), "--json", *flags)
        assert done.returncode == 0, done.stderr
        summary: dict[str, Any] = json.loads(done.stdout)
        assert summary["read"] == summary["published"] + summary["unchanged"] + summary["rejected"] + \
            summary["duplicates"]
        assert summary["invariant"] == "read = published + unchanged + rejected + duplicates"
        return summary


@pytest.fixture(scope="module")
def roster(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roster]:
    r = Roster(broker, tmp_path_factory.mktemp("roster-snapshot"))
    assert r.cli("topics", "ensure").returncode == 0
    asyncio.run(_tombstone_everything(broker))  # whatever another module left on the registry topics
    assert read_back(broker) == ({}, {})
    yield r
    asyncio.run(_tombstone_everything(broker))


def counts(added: int = 0, changed: int = 0, removed: int = 0, unchanged: int = 0, kept_row_rejected: int = 0,
           kept_not_in_file: int = 0) -> dict[str, int]:
    return {"added": added, "changed": changed, "removed": removed, "unchanged": unchanged,
            "kept_row_rejected": kept_row_rejected, "kept_not_in_file": kept_not_in_file}


def rows_of(summary: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return summary["read"], summary["published"], summary["unchanged"], summary["rejected"], summary["duplicates"]


# --- the tests, in order --------------------------------------------------------------------------------------------

def test_first_roster_adds_everyone(roster: Roster) -> None:
    summary = roster.load(write_roster(roster.files / "roster-2025-06.csv", FIRST, encoding="gb18030"))
    assert summary["mode"] == "snapshot" and summary["encoding"] == "gb18030"
    assert rows_of(summary) == (10, 10, 0, 0, 0)
    assert summary["persons"] == counts(added=10)
    assert summary["households"] == counts(added=5)
    assert (summary["tombstones"], summary["extra_messages"]) == (0, 5)
    assert_topics_hold(roster.bootstrap, FIRST)


def test_second_snapshot_removes_moves_and_changes(roster: Roster) -> None:
    summary = roster.load(write_roster(roster.files / "roster-2025-07.csv", SECOND))
    assert rows_of(summary) == (9, 1, 8, 0, 0)  # 买买提 changed; the other eight as they were
    assert summary["persons"] == counts(changed=1, removed=1, unchanged=8)  # 巴特尔 removed with SN-03
    assert summary["households"] == counts(changed=3, removed=1, unchanged=1)  # SN-01, -02 sizes, SN-04 status
    assert (summary["tombstones"], summary["extra_messages"]) == (2, 3)
    assert_topics_hold(roster.bootstrap, SECOND)
    persons, households = read_back(roster.bootstrap)
    assert persons[pkey(SON1.id).encode()]["household_id"] == "SN-02"
    assert households[b"SN-04"]["monitoring_status"] == "RISK_ELIMINATED"
    assert pkey(HEAD3.id).encode() not in persons and b"SN-03" not in households
    # read_compacted (what the load diffs against) agrees with the plain reader
    assert set(asyncio.run(read_compacted(roster.bootstrap, REGISTRY_PERSONS))) == set(persons)
    assert set(asyncio.run(read_compacted(roster.bootstrap, REGISTRY_HOUSEHOLDS))) == set(households)


def test_same_file_again_publishes_nothing(roster: Roster) -> None:
    before = ends(roster.bootstrap)
    summary = roster.load(roster.files / "roster-2025-07.csv")
    assert rows_of(summary) == (9, 0, 9, 0, 0)
    assert summary["persons"] == counts(unchanged=9)
    assert summary["households"] == counts(unchanged=4)
    assert summary["tombstones"] == 0
    assert ends(roster.bootstrap) == before  # not one message, not even a dead letter
    # the text summary says the same, with its invariant
    done = roster.cli("roster", "load", str(roster.files / "roster-2025-07.csv"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "bureau roster roster-2025-07.csv (utf-8-sig), snapshot"
    assert lines[1] == ("  read 9  published 0  unchanged 9  rejected 0  duplicates 0  "
                        "(read = published + unchanged + rejected + duplicates)")
    assert lines[2] == "  persons:    added 0  changed 0  removed 0  unchanged 9"
    assert lines[3] == "  households: added 0  changed 0  removed 0  unchanged 4"
    assert ends(roster.bootstrap) == before


def test_delta_with_a_partial_file_removes_nobody(roster: Roster) -> None:
    summary = roster.load(write_roster(roster.files / "sn-04-back.csv", DELTA), "--delta")
    assert summary["mode"] == "delta"
    assert rows_of(summary) == (2, 0, 2, 0, 0)
    assert summary["persons"] == counts(unchanged=2, kept_not_in_file=7)
    assert summary["households"] == counts(changed=1, kept_not_in_file=3)
    assert summary["tombstones"] == 0
    assert_topics_hold(roster.bootstrap, [*SECOND[:2], DELTA[0], SECOND[3]])


class Interrupted(Exception):
    pass


class StopsAfter:
    """A KafkaPublisher that delivers the first `after` registry messages (acknowledged) and then fails, as a load
    whose process dies part-way would leave the topics."""

    def __init__(self, inner: KafkaPublisher, after: int) -> None:
        self.inner, self.left = inner, after
        self.delivered: list[tuple[str, bytes, bool]] = []

    async def __aenter__(self) -> StopsAfter:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.inner.__aexit__(*exc)

    async def _one_more(self, topic: str, key: bytes, tombstone: bool) -> None:
        if topic in REGISTRY:
            if self.left == 0:
                await self.inner.flush()
                raise Interrupted(f"stopped after {len(self.delivered)} registry messages")
            self.left -= 1
            self.delivered.append((topic, key, tombstone))

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await self._one_more(topic, key, False)
        await self.inner.send(topic, key, value)

    async def tombstone(self, topic: str, key: bytes) -> None:
        await self._one_more(topic, key, True)
        await self.inner.tombstone(topic, key)

    async def flush(self) -> None:
        await self.inner.flush()


def interrupted_load(bootstrap: str, path: Path, after: int) -> list[tuple[str, bytes, bool]]:
    publisher = StopsAfter(KafkaPublisher(bootstrap), after)

    async def read_state(topic: str) -> dict[bytes, bytes]:
        return await read_compacted(bootstrap, topic)

    with pytest.raises(Interrupted):
        asyncio.run(load_snapshot(path, pseudonymiser=Pseudonymiser(KEY.encode()), codec=CODEC,
                                  clock=lambda: dt.datetime.now(dt.UTC), read_state=read_state,
                                  publisher_factory=lambda: publisher))
    return publisher.delivered


def test_interrupted_among_the_person_upserts_then_rerun_converges(roster: Roster) -> None:
    first = roster.files / "roster-2025-06.csv"
    # from the delta's state to FIRST: SN-01 and SN-02 change size, SN-03 comes back; 买买提 goes back to SN-01,
    # 巴特尔 comes back. Stop after the three household upserts and the first person upsert.
    delivered = interrupted_load(roster.bootstrap, first, after=4)
    assert delivered == [(REGISTRY_HOUSEHOLDS, b"SN-01", False), (REGISTRY_HOUSEHOLDS, b"SN-02", False),
                         (REGISTRY_HOUSEHOLDS, b"SN-03", False), (REGISTRY_PERSONS, pkey(SON1.id).encode(), False)]
    persons, households = read_back(roster.bootstrap)
    assert households == expected_households(FIRST)  # every household is already there ...
    assert persons != expected_persons(FIRST) and pkey(HEAD3.id).encode() not in persons  # ... 巴特尔 is not

    summary = roster.load(first)
    assert rows_of(summary) == (10, 1, 9, 0, 0)
    assert summary["persons"] == counts(added=1, unchanged=9)
    assert summary["households"] == counts(unchanged=5)
    assert_topics_hold(roster.bootstrap, FIRST)


def test_interrupted_among_the_tombstones_then_rerun_converges(roster: Roster) -> None:
    second = roster.files / "roster-2025-07.csv"
    # FIRST -> SECOND: 3 household upserts, 1 person upsert, 1 person tombstone, 1 household tombstone.
    # Stop before the last: 巴特尔 is gone, SN-03 is still there (a household outlives its people, never the reverse).
    delivered = interrupted_load(roster.bootstrap, second, after=5)
    assert delivered[-1] == (REGISTRY_PERSONS, pkey(HEAD3.id).encode(), True)
    persons, households = read_back(roster.bootstrap)
    assert persons == expected_persons(SECOND)
    assert households == {**expected_households(SECOND), b"SN-03": expected_households(FIRST)[b"SN-03"]}

    summary = roster.load(second)
    assert rows_of(summary) == (9, 0, 9, 0, 0)
    assert summary["persons"] == counts(unchanged=9)
    assert summary["households"] == counts(removed=1, unchanged=4)
    assert summary["tombstones"] == 1
    assert_topics_hold(roster.bootstrap, SECOND)


def test_a_killed_load_then_rerun_converges(roster: Roster, tmp_path: Path) -> None:
    """The process itself dies (SIGKILL) while it publishes a large roster; a re-run converges to the file."""
    born = [(dt.date(1940, 1, 1) + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(KILLED_HOUSEHOLDS)]
    many = [house(f"SN-K{i:05d}", (Member(f"某{i}", make_id("652701", born[i], 450, True), "户主", True),))
            for i in range(KILLED_HOUSEHOLDS)]
    big = write_roster(tmp_path / "big.csv", [*SECOND, *many])
    env = {**os.environ, "POVWATCH_BOOTSTRAP": roster.bootstrap, "POVWATCH_PSEUDONYM_KEY": KEY}
    start = ends(roster.bootstrap)
    child = subprocess.Popen([sys.executable, "-m", "services.cli", "roster", "load", str(big), "--json"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    asyncio.run(_kill_once_publishing(child, roster.bootstrap, start, timeout=60))
    assert child.wait() == -9, "the load finished before it could be killed"
    partial = read_back(roster.bootstrap)
    assert partial != (expected_persons([*SECOND, *many]), expected_households([*SECOND, *many]))

    summary = roster.load(big)
    total = len(SECOND) + KILLED_HOUSEHOLDS
    persons = summary["persons"]
    assert rows_of(summary)[0] == 9 + KILLED_HOUSEHOLDS
    assert persons["added"] > 0 and persons["added"] + persons["unchanged"] == 9 + KILLED_HOUSEHOLDS
    assert persons["changed"] == persons["removed"] == summary["households"]["removed"] == 0
    assert summary["households"]["added"] + summary["households"]["unchanged"] == total
    assert_topics_hold(roster.bootstrap, [*SECOND, *many])

    back = roster.load(roster.files / "roster-2025-07.csv")
    assert back["persons"] == counts(removed=KILLED_HOUSEHOLDS, unchanged=9)
    assert back["households"] == counts(removed=KILLED_HOUSEHOLDS, unchanged=4)
    assert_topics_hold(roster.bootstrap, SECOND)


def test_a_snapshot_without_a_valid_row_is_refused(roster: Roster) -> None:
    bad = [House(h.hid, h.village, h.category, h.status, h.labour, "-1", h.members) for h in SECOND]  # negative
    before = ends(roster.bootstrap)
    done = roster.cli("roster", "load", str(write_roster(roster.files / "all-bad.csv", bad)))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "povwatch: error: all-bad.csv: no valid row (9 read, 9 rejected); a snapshot without anyone would remove "
        "the whole roster, so nothing was published"]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert ends(roster.bootstrap) == before
    assert_topics_hold(roster.bootstrap, SECOND)


def test_a_rejected_row_does_not_remove_its_person(roster: Roster) -> None:
    wrong_sex = [h if h.hid != "SN-05" else House(h.hid, h.village, h.category, h.status, h.labour, h.income,
                                                  (h.members[0], Member(SON5.name, SON5.id, "子", False)))
                 for h in SECOND]
    path = write_roster(roster.files / "wrong-sex.csv", wrong_sex)
    summary = roster.load(path)
    assert rows_of(summary) == (9, 0, 8, 1, 0)
    assert summary["persons"] == counts(unchanged=8, kept_row_rejected=1)
    assert summary["households"] == counts(unchanged=4)
    assert summary["rejects"] == [{"row": 10, "reasons": ["sex: does not match the sex encoded in the ID number"]}]
    assert_topics_hold(roster.bootstrap, SECOND)


def test_no_name_or_id_number_on_the_topics(roster: Roster) -> None:
    async def everything() -> list[bytes]:
        return [(rec.key or b"") + rec.value
                async for rec in read_topic(roster.bootstrap, [*REGISTRY, dlq_topic("bureau")], idle_timeout=2.0)]

    messages = asyncio.run(everything())
    assert messages
    for secret in [*(m.id for m in EVERYONE), *(m.name for m in EVERYONE)]:
        assert not any(secret.encode() in message for message in messages), secret
