"""The audit trail's hash chains (plumbing/audit_chain.py): sealing, and every kind of tampering found where it is."""
from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from plumbing.audit_chain import GENESIS, Head, record_hash, seal, verify_chains
from schemas.codec import default_codec

T0 = dt.datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=dt.UTC)


def chain(n: int, party: str = "intake", instance: str = "host-1") -> list[dict[str, Any]]:
    head, out = Head(), []
    for i in range(n):
        record = seal(head, party=party, instance=instance, at=T0 + dt.timedelta(seconds=i), kind="intake.request",
                      subjects=[f"household:H{i:02d}"], counts={"n": i}, details={"status": "202"})
        out.append(record)
        head = Head.after(record)
    return out


def positions(records: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    return list(enumerate(records))


def test_a_chain_links_each_record_to_the_previous_one() -> None:
    records = chain(3)
    assert records[0]["prev_hash"] == GENESIS and [r["seq"] for r in records] == [0, 1, 2]
    assert records[1]["prev_hash"] == records[0]["hash"] and records[2]["prev_hash"] == records[1]["hash"]
    assert records[0]["at"].microsecond == 123000  # cut to milliseconds, as Avro keeps it
    [report] = verify_chains(positions(records))
    assert report.ok and report.checked == 3 and (report.first_seq, report.last_seq) == (0, 2)


def test_the_hash_survives_the_avro_round_trip() -> None:
    codec = default_codec()
    for record in chain(4):
        back = codec.decode(codec.encode("povwatch.audit.AuditRecord", record)).record
        assert back == record and record_hash(back) == record["hash"]


def test_interleaved_chains_are_verified_separately() -> None:
    a, b = chain(3, "intake"), chain(2, "monitor", "worker-2")
    mixed = [a[0], b[0], a[1], b[1], a[2]]
    reports = {r.party: r for r in verify_chains(positions(mixed))}
    assert reports["intake"].checked == 3 and reports["monitor"].checked == 2
    assert all(r.ok for r in reports.values())


def test_a_chain_that_starts_later_is_accepted_as_expired_at_its_start() -> None:
    [report] = verify_chains(positions(chain(6)[2:]))
    assert report.ok and report.first_seq == 2


def test_a_resumed_chain_continues_from_the_last_record() -> None:
    records = chain(2)
    resumed = seal(Head.after(records[-1]), party="intake", instance="host-1", at=T0, kind="intake.request")
    [report] = verify_chains(positions([*records, resumed]))
    assert report.ok and report.last_seq == 2


def _tamper(records: list[dict[str, Any]], kind: str, at: int) -> list[dict[str, Any]]:
    out = [dict(r) for r in records]
    if kind == "removed":
        del out[at]
    elif kind == "changed":
        out[at]["counts"] = {"n": 999}
    elif kind == "changed-and-rehashed":  # the hash recomputed too: the next record's prev_hash tells
        out[at]["details"] = {"status": "500"}
        out[at]["hash"] = record_hash(out[at])
    elif kind == "reordered":
        out[at], out[at + 1] = out[at + 1], out[at]
    elif kind == "duplicated":
        out.insert(at + 1, dict(out[at]))
    return out


EXPECTED = {"removed": "removed", "changed": "changed", "changed-and-rehashed": "changed", "reordered": "reordered",
            "duplicated": "duplicated"}


@settings(max_examples=150, deadline=None)
@given(n=st.integers(3, 12), kind=st.sampled_from(sorted(EXPECTED)), data=st.data())
def test_every_kind_of_tampering_is_found_at_its_record(n: int, kind: str, data: st.DataObject) -> None:
    records = chain(n)
    # a removal or a re-hashed change is visible from the record after it: never the last one
    last = n - 2 if kind in ("removed", "changed-and-rehashed", "reordered", "duplicated") else n - 1
    at = data.draw(st.integers(1 if kind == "removed" else 0, last))
    [report] = verify_chains(positions(_tamper(records, kind, at)))
    assert report.broken is not None, kind
    assert report.broken.kind == EXPECTED[kind]
    assert report.broken.seq == at or (kind == "reordered" and report.broken.seq == at + 1)
    assert report.checked <= n + 1


def test_the_break_names_the_missing_records() -> None:
    records = chain(6)
    [report] = verify_chains(positions(records[:2] + records[4:]))
    assert report.broken is not None and report.broken.kind == "removed" and report.broken.seq == 2
    assert report.broken.detail == "record 2-3 missing (record 4 follows 1)"
    assert report.broken.position == 2 and report.checked == 3


def test_a_forged_first_record_is_changed() -> None:
    records = chain(2)
    forged = dict(records[0], prev_hash="1" * 64)
    forged["hash"] = record_hash(forged)
    [report] = verify_chains(positions([forged, records[1]]))
    assert report.broken is not None and report.broken.kind == "changed" and report.broken.seq == 0
