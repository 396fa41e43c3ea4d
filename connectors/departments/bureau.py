"""乡村振兴局 Rural Revitalisation Bureau: the roster of monitored households (who is watched).

One row per person; household columns repeat on each member's row. Every valid row becomes a `Person` for
`registry.persons` (key person_key); every household one `Household` for `registry.households` (key household_id)
once the file is read. A row that contradicts its household (other village, income, ...), a second 户主, or a
person listed twice differently is rejected with the row it disagrees with.

The file is the full snapshot of the monitored population (connectors.snapshot): `load_snapshot` validates the
whole file in memory first, then reads what the registry topics hold, and publishes only what differs —
upserts for added and changed records, tombstones for the people and households no longer listed (none with
`delta`). Row invariant of its summary: read = published + unchanged + rejected + duplicates, where published
rows are the persons added or changed and unchanged rows the persons already on the topic as they are.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from connectors.fields import Amount, Choice, Count, IdNumber, RegionCode, Sex, Text
from connectors.framework import (
    DEFAULT_ZONE,
    Accepted,
    Column,
    FeedSpec,
    Message,
    Publisher,
    RawRow,
    Summary,
    ValidRecord,
    event_id_of,
    run_file,
)
from connectors.idcard import InvalidId, birth_date, normalise_id, sex_from_id
from connectors.pseudonym import Pseudonymiser
from connectors.snapshot import (
    HOUSEHOLD_SCHEMA,
    PERSON_SCHEMA,
    Diff,
    RosterPlan,
    Wanted,
    content_of,
    decode_state,
    plan_roster,
)
from plumbing.clock import Clock
from schemas import catalog
from schemas.codec import Codec
from schemas.errors import InputFileError
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS

__all__ = ["ROSTER", "RosterHandler", "RELATIONS", "RegistryPublisher", "RosterSummary", "ROW_INVARIANT",
           "load_snapshot"]

RELATIONS = ("户主", "配偶", "子", "女", "父亲", "母亲", "孙子", "孙女", "其他")


def _sex_matches_id(values: Mapping[str, Any]) -> str | None:
    """性别 agrees with the sex encoded in the 身份证号码."""
    if sex_from_id(values["id_number"]) != values["sex"]:
        return "sex: does not match the sex encoded in the ID number"
    return None


def _household_size_positive(values: Mapping[str, Any]) -> str | None:
    """家庭人口数 is at least 1."""
    return None if values["household_size"] >= 1 else "household_size: must be at least 1"


ROSTER = FeedSpec(
    wire=catalog.ROSTER,
    columns=(
        Column("household_id", "户编号", Text(max_length=40)),
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("sex", "性别", Sex()),
        Column("relation", "与户主关系", Choice({r: r for r in RELATIONS})),
        Column("village_code", "行政区划代码", RegionCode(12)),
        Column("category", "户类型", Choice({
            "脱贫不稳定户": "UNSTABLE_LIFTED", "边缘易致贫户": "MARGINAL", "突发严重困难户": "SUDDEN_HARDSHIP",
            "脱贫户": "LIFTED", "一般农户": "ORDINARY",
        })),
        Column("monitoring_status", "监测状态", Choice({"未纳入": "NOT_INCLUDED", "监测中": "MONITORING",
                                                     "风险消除": "RISK_ELIMINATED"})),
        Column("labour_capacity", "劳动能力", Choice({"有劳动能力": "ABLE", "弱劳动能力": "WEAK",
                                                   "无劳动能力": "NONE"})),
        Column("per_capita_income", "上年人均纯收入", Amount()),
        Column("household_size", "家庭人口数", Count(maximum=50)),
    ),
    checks=(_sex_matches_id, _household_size_positive),
)

_HOUSEHOLD_FIELDS = ("village_code", "category", "monitoring_status", "labour_capacity", "per_capita_income",
                     "household_size")


@dataclass
class _Household:
    row: int
    values: dict[str, Any]
    source: dict[str, Any]
    head_key: str | None = None
    head_row: int = 0


class RosterHandler:
    def __init__(self, *, pseudonymiser: Pseudonymiser, codec: Codec, clock: Clock) -> None:
        self._pseudonymiser = pseudonymiser
        self._codec = codec
        self._clock = clock
        self._households: dict[str, _Household] = {}
        self._persons: dict[str, tuple[str, str, int]] = {}  # person_key -> (identity, household_id, row)
        self.rejected_keys: set[bytes] = set()  # person_keys of rejected rows whose ID number is valid
        self.alias_keys: set[bytes] = set()  # person_keys under a retiring key (a rotation): not rows of their own

    def rejected(self, raw: RawRow) -> None:
        """Told of every rejected row: remember who it is when its ID number is valid (snapshot safety)."""
        try:
            number = normalise_id(raw.cells.get("id_number", ""))
        except InvalidId:
            return
        self.rejected_keys.add(self._pseudonymiser.person_key(number).encode("ascii"))
        self.rejected_keys.update(alias.encode("ascii") for _, alias in self._pseudonymiser.aliases(number))

    def handle(self, record: ValidRecord, source: dict[str, Any]) -> Accepted | list[str]:
        v = record.values
        key = self._pseudonymiser.person_key(v["id_number"])
        hh_id = v["household_id"]
        person = {"person_key": key, "household_id": hh_id, "relation": v["relation"], "sex": v["sex"],
                  "birth_date": birth_date(v["id_number"]), "village_code": v["village_code"]}
        household = {f: v[f] for f in _HOUSEHOLD_FIELDS}
        identity = event_id_of("bureau", "roster", {**person, **household})
        earlier = self._persons.get(key)
        if earlier is not None:
            if earlier[0] == identity:
                return Accepted(identity, ())
            return [f"id_number: the same person is already listed on row {earlier[2]} (household {earlier[1]})"]
        known = self._households.get(hh_id)
        if known is not None:
            differing = [f for f in _HOUSEHOLD_FIELDS if known.values[f] != household[f]]
            if differing:
                return [f"{f}: differs from row {known.row} of household {hh_id}" for f in differing]
            if v["relation"] == "户主" and known.head_key is not None:
                return [f"relation: household {hh_id} already has a 户主 on row {known.head_row}"]
        else:
            known = self._households[hh_id] = _Household(record.row, household, source)
        if v["relation"] == "户主":
            known.head_key, known.head_row = key, record.row
        self._persons[key] = (identity, hh_id, record.row)
        now = self._clock()
        value = self._codec.encode("povwatch.registry.Person", {
            **person, "ingested_at": now, "source": {**source, "key_id": self._pseudonymiser.key_id}})
        messages = [Message(REGISTRY_PERSONS, key.encode("ascii"), value)]
        # during a key rotation: the same person under each retiring key, so events still in flight under it join
        for key_id, alias in self._pseudonymiser.aliases(v["id_number"]):
            old = self._codec.encode("povwatch.registry.Person", {
                **person, "person_key": alias, "ingested_at": now, "source": {**source, "key_id": key_id}})
            messages.append(Message(REGISTRY_PERSONS, alias.encode("ascii"), old))
            self.alias_keys.add(alias.encode("ascii"))
        return Accepted(identity, tuple(messages))

    def finish(self) -> list[Message]:
        now: dt.datetime = self._clock()
        messages = []
        for hh_id, hh in self._households.items():
            record = {"household_id": hh_id, "head_person_key": hh.head_key, **hh.values,
                      "ingested_at": now, "source": {**hh.source, "key_id": self._pseudonymiser.key_id}}
            messages.append(Message(REGISTRY_HOUSEHOLDS, hh_id.encode("utf-8"),
                                    self._codec.encode("povwatch.registry.Household", record)))
        return messages


# --- the roster as a snapshot --------------------------------------------------------------------------------

ROW_INVARIANT = "read = published + unchanged + rejected + duplicates"


class RegistryPublisher(Publisher, Protocol):
    """A Publisher that can also delete a key from a compacted topic (plumbing.kafka_io.KafkaPublisher)."""

    async def tombstone(self, topic: str, key: bytes) -> None: ...


ReadState = Callable[[str], Awaitable[Mapping[bytes, bytes]]]  # topic -> its contents (key -> latest value)


@dataclass
class RosterSummary(Summary):
    """A roster load. Rows: `published` = rows whose person was added or changed, `unchanged` = rows whose person
    is on the topic as it is (not re-sent), so read = published + unchanged + rejected + duplicates.
    `persons` and `households` say what happened to each key of the two topics."""

    mode: Literal["snapshot", "delta"] = "snapshot"
    unchanged: int = 0
    persons: Diff = field(default_factory=Diff)
    households: Diff = field(default_factory=Diff)
    tombstones: int = 0

    @classmethod
    def of(cls, rows: Summary, plan: RosterPlan, *, delta: bool,
           aliases: Collection[bytes] = ()) -> RosterSummary:
        """`aliases`: the person keys under a retiring key (a rotation), which are keys but not rows."""
        def rows_of(keys: Collection[bytes]) -> int:
            return sum(1 for key in keys if key not in aliases)

        return cls(
            rows.department, rows.feed, rows.file, rows.encoding, read=rows.read,
            published=rows_of(plan.persons.upserts), rejected=rows.rejected, duplicates=rows.duplicates,
            blank_lines=rows.blank_lines, extra_messages=len(plan.households.upserts), rejects=rows.rejects,
            mode="delta" if delta else "snapshot", unchanged=rows_of(plan.persons.unchanged), persons=plan.persons,
            households=plan.households, tombstones=plan.tombstones,
        )

    @property
    def balanced(self) -> bool:
        return self.read == self.published + self.unchanged + self.rejected + self.duplicates

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "unchanged": self.unchanged, "mode": self.mode, "invariant": ROW_INVARIANT,
                "persons": self.persons.counts(), "households": self.households.counts(),
                "tombstones": self.tombstones}


@dataclass
class _Outbox:
    """A Publisher that keeps what it is sent: the whole file is validated before anything leaves."""

    sent: list[Message] = field(default_factory=list)

    async def __aenter__(self) -> _Outbox:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append(Message(topic, key, value))

    async def flush(self) -> None:
        return None


def _wanted(sent: list[Message], topic: str, schema: str, codec: Codec) -> dict[bytes, Wanted]:
    return {m.key: Wanted(content_of(codec.decode(m.value, expect=schema).record), m.value)
            for m in sent if m.topic == topic}


def _keep_rejected_heads(households: dict[bytes, Wanted], current: Mapping[bytes, Mapping[str, Any]],
                         kept: Collection[bytes], codec: Codec) -> dict[bytes, Wanted]:
    """A household whose 户主 row was rejected (and who is kept) keeps the head it has on the topic, rather than
    losing it because of a bad row."""
    out = dict(households)
    for key, wanted in households.items():
        head = current.get(key, {}).get("head_person_key")
        if wanted.content.get("head_person_key") is None and isinstance(head, str) and head.encode() in kept:
            record = {**codec.decode(wanted.value, expect=HOUSEHOLD_SCHEMA).record, "head_person_key": head}
            out[key] = Wanted(content_of(record), codec.encode(HOUSEHOLD_SCHEMA, record))
    return out


async def load_snapshot(
    path: Path,
    *,
    pseudonymiser: Pseudonymiser,
    codec: Codec,
    clock: Clock,
    read_state: ReadState,
    publisher_factory: Callable[[], AbstractAsyncContextManager[RegistryPublisher]],
    delta: bool = False,
    zone: dt.tzinfo = DEFAULT_ZONE,
) -> RosterSummary:
    """Load a roster file: validate it whole, diff it against the registry topics, publish the dead letters,
    then the plan's steps, each acknowledged before the next (connectors.snapshot). A snapshot without a single
    valid row is refused (InputFileError) before anything is read or sent: it would remove everyone."""
    handler = RosterHandler(pseudonymiser=pseudonymiser, codec=codec, clock=clock)
    outbox = _Outbox()
    rows = await run_file(ROSTER, path, handler, publisher_factory=lambda: outbox, codec=codec, clock=clock,
                          stage="roster", on_reject=handler.rejected, zone=zone)
    persons = _wanted(outbox.sent, REGISTRY_PERSONS, PERSON_SCHEMA, codec)
    households = _wanted(outbox.sent, REGISTRY_HOUSEHOLDS, HOUSEHOLD_SCHEMA, codec)
    letters = [m for m in outbox.sent if m.topic not in (REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS)]
    if not persons and not delta:
        raise InputFileError(f"{path.name}: no valid row ({rows.read} read, {rows.rejected} rejected); a snapshot "
                             "without anyone would remove the whole roster, so nothing was published")
    async with publisher_factory() as publisher:
        current_households = decode_state(await read_state(REGISTRY_HOUSEHOLDS), codec, HOUSEHOLD_SCHEMA)
        kept = handler.rejected_keys - persons.keys()
        plan = plan_roster(
            decode_state(await read_state(REGISTRY_PERSONS), codec, PERSON_SCHEMA), current_households,
            persons, _keep_rejected_heads(households, current_households, kept, codec), delta=delta,
            rejected_person_keys=kept,
        )
        for letter in letters:
            await publisher.send(letter.topic, letter.key, letter.value)
        await publisher.flush()
        for step in plan.steps:
            for send in step:
                if send.value is None:
                    await publisher.tombstone(send.topic, send.key)
                else:
                    await publisher.send(send.topic, send.key, send.value)
            await publisher.flush()
    return RosterSummary.of(rows, plan, delta=delta, aliases=handler.alias_keys)
