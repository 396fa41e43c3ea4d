"""乡村振兴局 Rural Revitalisation Bureau: the roster of monitored households (who is watched).

One row per person; household columns repeat on each member's row. Every valid row becomes a `Person` on
`registry.persons` (key person_key); every household becomes one `Household` on `registry.households`
(key household_id) once the file is read. A row that contradicts its household (other village, income, ...),
a second 户主, or a person listed twice differently is rejected with the row it disagrees with.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.fields import Amount, Choice, Count, IdNumber, RegionCode, Sex, Text
from connectors.framework import Accepted, Clock, Column, FeedSpec, Message, ValidRecord, event_id_of
from connectors.idcard import birth_date, sex_from_id
from connectors.pseudonym import Pseudonymiser
from schemas.codec import Codec
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS

__all__ = ["ROSTER", "RosterHandler", "RELATIONS"]

RELATIONS = ("户主", "配偶", "子", "女", "父亲", "母亲", "孙子", "孙女", "其他")


def _sex_matches_id(values: Mapping[str, Any]) -> str | None:
    if sex_from_id(values["id_number"]) != values["sex"]:
        return "sex: does not match the sex encoded in the ID number"
    return None


def _household_size_positive(values: Mapping[str, Any]) -> str | None:
    return None if values["household_size"] >= 1 else "household_size: must be at least 1"


ROSTER = FeedSpec(
    department="bureau",
    feed="roster",
    schema="povwatch.registry.Person",
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
        value = self._codec.encode("povwatch.registry.Person",
                                   {**person, "ingested_at": self._clock(), "source": source})
        return Accepted(identity, (Message(REGISTRY_PERSONS, key.encode("ascii"), value),))

    def finish(self) -> list[Message]:
        now: dt.datetime = self._clock()
        messages = []
        for hh_id, hh in self._households.items():
            record = {"household_id": hh_id, "head_person_key": hh.head_key, **hh.values,
                      "ingested_at": now, "source": hh.source}
            messages.append(Message(REGISTRY_HOUSEHOLDS, hh_id.encode("utf-8"),
                                    self._codec.encode("povwatch.registry.Household", record)))
        return messages
