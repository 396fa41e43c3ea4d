"""Reading the audit trail (`audit.events`): verify its hash chains, export a copy, list a household's exchanges.

    povwatch audit verify [--json] [--from-file FILE]   per chain (party, instance): records checked, first break;
                                                        exit 1 on a break (or an undecodable record)
    povwatch audit export FILE                          the topic's records as JSON lines (a copy to verify later)
    povwatch audit household ID [--json]                the case DB's audit rows and the trail's exchanges
                                                        that named the household (--case-db-only: no Kafka)

The chain logic is plumbing/audit_chain.py; the writer plumbing/audit.py. The topic is read up to the end offset
taken at the start (a record written meanwhile waits for the next run). READ on the topic is for `admin` only in
secured mode: these commands run with the admin's credentials.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plumbing.audit import AUDIT_SCHEMA
from plumbing.audit_chain import ChainReport, verify_chains
from plumbing.kafka_io import read_since
from plumbing.table import render_table
from schemas.codec import Codec, default_codec
from schemas.errors import DecodeError, InputFileError
from schemas.topics import AUDIT_EVENTS

__all__ = ["Trail", "read_trail", "load_file", "export_lines", "verify_trail", "render_verify", "verify_json",
           "household_exchanges", "render_exchanges"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass
class Trail:
    records: list[tuple[int, dict[str, Any]]]  # (offset or line, record) in topic order
    undecodable: list[int]  # offsets (lines) of records that are not audit records


async def read_trail(bootstrap: str, codec: Codec | None = None) -> Trail:
    codec = codec or default_codec()
    trail = Trail([], [])
    async for rec in read_since(bootstrap, [AUDIT_EVENTS], {}):
        try:
            trail.records.append((rec.offset, codec.decode(rec.value, expect=AUDIT_SCHEMA).record))
        except DecodeError:
            trail.undecodable.append(rec.offset)
    return trail


def _millis(at: dt.datetime) -> int:
    return int((at - _EPOCH) // dt.timedelta(milliseconds=1))


def export_lines(trail: Trail) -> list[str]:
    """One JSON object per record: {"position": offset, "record": {...}} (the time as epoch milliseconds)."""
    return [json.dumps({"position": pos, "record": {**r, "at": _millis(r["at"])}}, ensure_ascii=False,
                       sort_keys=True) for pos, r in trail.records]


def load_file(path: Path) -> Trail:
    """A copy written by `export_lines` (possibly tampered with); a line that is not a record is undecodable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read ({type(exc).__name__})") from None
    trail = Trail([], [])
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            record = dict(item["record"])
            record["at"] = _EPOCH + dt.timedelta(milliseconds=int(record["at"]))
            for field in ("party", "instance", "seq", "kind", "prev_hash", "hash"):
                if field not in record:
                    raise KeyError(field)
            trail.records.append((int(item.get("position", number)), record))
        except (ValueError, KeyError, TypeError):
            trail.undecodable.append(number)
    return trail


def verify_trail(trail: Trail) -> tuple[list[ChainReport], bool]:
    """Every chain's report, and whether the whole trail is intact."""
    reports = verify_chains(trail.records)
    return reports, all(r.ok for r in reports) and not trail.undecodable


def render_verify(reports: list[ChainReport], trail: Trail) -> str:
    rows = []
    for r in reports:
        span = "-" if r.first_seq is None else f"{r.first_seq}-{r.last_seq}"
        result = "ok" if r.broken is None else f"BROKEN: {r.broken.kind} at seq {r.broken.seq} " \
                                               f"(position {r.broken.position}): {r.broken.detail}"
        rows.append([r.party, r.instance, str(r.checked), span, result])
    lines = [render_table(["party", "instance", "checked", "seq", "result"], rows, right_from=2)] if rows else \
        ["(the audit trail is empty)"]
    if trail.undecodable:
        lines.append(f"{len(trail.undecodable)} record(s) that are not audit records, at "
                     f"{', '.join(map(str, trail.undecodable[:10]))}")
    broken = sum(1 for r in reports if not r.ok)
    lines.append(f"{len(reports)} chain(s), {sum(r.checked for r in reports)} record(s) checked: "
                 + ("intact" if not broken and not trail.undecodable else f"{broken} chain(s) broken"))
    return "\n".join(lines)


def verify_json(reports: list[ChainReport], trail: Trail, intact: bool) -> str:
    return json.dumps({"intact": intact, "chains": [r.as_dict() for r in reports],
                       "undecodable": trail.undecodable}, ensure_ascii=False, indent=2)


def household_exchanges(trail: Trail, household_id: str) -> list[dict[str, Any]]:
    """The trail's records that named the household, oldest first (JSON-able)."""
    subject = f"household:{household_id}"
    return [{"at": r["at"].isoformat(), "party": r["party"], "instance": r["instance"], "seq": r["seq"],
             "kind": r["kind"], "subjects": len(r["subjects"]), "counts": r["counts"], "details": r["details"]}
            for _, r in trail.records if subject in r["subjects"]]


def render_exchanges(exchanges: list[dict[str, Any]]) -> str:
    if not exchanges:
        return "(no exchange on the audit trail named this household)"
    rows = [[e["at"][:19].replace("T", " "), e["party"], e["kind"],
             " ".join(f"{k}={v}" for k, v in sorted({**e["details"], **e["counts"]}.items())
                      if k not in ("at", "audit_log_id"))] for e in exchanges]
    return render_table(["when (UTC)", "party", "exchange", "details"], rows)


def cmd_verify(args: Any, settings: Any) -> int:
    trail = load_file(Path(args.from_file)) if args.from_file else asyncio.run(read_trail(settings.bootstrap))
    reports, intact = verify_trail(trail)
    print(verify_json(reports, trail, intact) if args.json else render_verify(reports, trail))
    return 0 if intact else 1


def cmd_export(args: Any, settings: Any) -> int:
    trail = asyncio.run(read_trail(settings.bootstrap))
    lines = export_lines(trail)
    Path(args.target).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"{len(lines)} audit record(s) written to {args.target}")
    return 0
