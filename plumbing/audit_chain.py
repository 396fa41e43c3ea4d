"""The audit trail's hash chains: sealing a record, and verifying a sequence of them. Pure: no Kafka, no clock.

A chain belongs to one (party, instance). Record `seq` n carries `prev_hash` = the `hash` of record n-1 (64 zeros
for n = 0) and its own `hash` = SHA-256 of its canonical form: the JSON of every field but `hash`, keys sorted,
the time as epoch milliseconds. So a record changed in place no longer matches its hash; a record removed leaves
a gap in `seq`; records swapped come out of `seq` order; and a changed record whose hash was recomputed no longer
matches the `prev_hash` of the record after it.

    seal(head, party=..., ...)   the next record of a chain (a dict ready for the AuditRecord schema)
    verify_chains(records)       per chain: records checked, first seq, and the first break (or None)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GENESIS", "Head", "Break", "ChainReport", "canonical", "record_hash", "seal", "verify_chains",
           "chain_key"]

GENESIS = "0" * 64
BREAK_KINDS = ("changed", "removed", "reordered", "duplicated")


@dataclass(frozen=True)
class Head:
    """Where a chain stands: the next record gets `seq` and `prev_hash`."""

    seq: int = 0
    prev_hash: str = GENESIS

    @classmethod
    def after(cls, record: Mapping[str, Any]) -> Head:
        return cls(int(record["seq"]) + 1, str(record["hash"]))


def chain_key(party: str, instance: str) -> str:
    return f"{party}/{instance}"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _millis(value: Any) -> int:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int((value - _EPOCH) // dt.timedelta(milliseconds=1))
    return int(value)


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash is taken over: every field but `hash`, deterministic."""
    body = {
        "party": record["party"], "instance": record["instance"], "seq": int(record["seq"]),
        "at": _millis(record["at"]), "kind": record["kind"], "subjects": list(record.get("subjects") or []),
        "counts": {k: int(v) for k, v in (record.get("counts") or {}).items()},
        "details": {k: str(v) for k, v in (record.get("details") or {}).items()},
        "prev_hash": record["prev_hash"],
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def seal(head: Head, *, party: str, instance: str, at: dt.datetime, kind: str, subjects: Iterable[str] = (),
         counts: Mapping[str, int] | None = None, details: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The next record of the chain at `head` (its time cut to milliseconds, as Avro keeps it)."""
    at = at.replace(microsecond=at.microsecond - at.microsecond % 1000)
    record: dict[str, Any] = {
        "party": party, "instance": instance, "seq": head.seq, "at": at, "kind": kind,
        "subjects": list(subjects), "counts": {k: int(v) for k, v in (counts or {}).items()},
        "details": {k: str(v) for k, v in (details or {}).items()}, "prev_hash": head.prev_hash,
    }
    record["hash"] = record_hash(record)
    return record


@dataclass(frozen=True)
class Break:
    """The first place a chain is not as written: `kind` one of BREAK_KINDS, at record `seq` (topic `position`)."""

    kind: str
    seq: int
    position: int
    detail: str


@dataclass
class ChainReport:
    party: str
    instance: str
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    broken: Break | None = None
    _last: dict[str, Any] | None = field(default=None, repr=False)
    _seen: set[int] = field(default_factory=set, repr=False)

    @property
    def ok(self) -> bool:
        return self.broken is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"party": self.party, "instance": self.instance, "checked": self.checked,
                               "first_seq": self.first_seq, "last_seq": self.last_seq, "ok": self.ok}
        if self.broken is not None:
            b = self.broken
            out["break"] = {"kind": b.kind, "seq": b.seq, "position": b.position, "detail": b.detail}
        return out


def _check(report: ChainReport, record: Mapping[str, Any], position: int, all_seqs: set[int]) -> Break | None:
    seq = int(record["seq"])
    if record_hash(record) != record["hash"]:
        return Break("changed", seq, position, f"record {seq} does not match its hash")
    last = report._last
    if last is None:
        if seq == 0 and record["prev_hash"] != GENESIS:
            return Break("changed", seq, position, "record 0 does not start from the genesis hash")
        return None
    expected = int(last["seq"]) + 1
    if seq == expected:
        if record["prev_hash"] != last["hash"]:
            return Break("changed", seq - 1, position,
                         f"record {seq - 1} is not the one record {seq} follows (it was replaced)")
        return None
    if seq in report._seen:
        return Break("duplicated", seq, position, f"record {seq} appears twice (two writers on one chain?)")
    if seq < expected:
        return Break("reordered", seq, position, f"record {seq} comes after record {expected - 1}")
    missing = [s for s in range(expected, seq) if s in all_seqs]
    if missing:
        return Break("reordered", seq, position, f"record {seq} comes before record {missing[0]}")
    gap = f"{expected}" if seq - expected == 1 else f"{expected}-{seq - 1}"
    return Break("removed", expected, position, f"record {gap} missing (record {seq} follows {expected - 1})")


def verify_chains(records: Iterable[tuple[int, Mapping[str, Any]]]) -> list[ChainReport]:
    """Check (position, record) pairs in topic order, chain by chain; a chain's report stops counting at its
    first break. A chain whose oldest record has seq > 0 starts there (earlier records expired: retention)."""
    by_chain: dict[tuple[str, str], list[tuple[int, Mapping[str, Any]]]] = {}
    for position, record in records:
        by_chain.setdefault((str(record["party"]), str(record["instance"])), []).append((position, record))
    reports = []
    for (party, instance), items in sorted(by_chain.items()):
        report = ChainReport(party, instance)
        all_seqs = {int(r["seq"]) for _, r in items}
        for position, record in items:
            report.checked += 1
            broken = _check(report, record, position, all_seqs)
            if broken is not None:
                report.broken = broken
                break
            seq = int(record["seq"])
            if report.first_seq is None:
                report.first_seq = seq
            report.last_seq = seq
            report._seen.add(seq)
            report._last = dict(record)
        reports.append(report)
    return reports
