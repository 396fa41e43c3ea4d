"""The roster's rows into the case DB's `households` and `members`, in bulk (`Cases.import_roster` calls it).

    upsert_roster(session, roster, now) -> {"households_added": n, ..., "members_unchanged": m}

What is stored is decided row by row exactly as it always was - a household or member that is not in the case DB
is added, one whose fields differ is updated (a household's `updated_at` set to `now`), one whose fields are the
same is unchanged, and a household whose file differs from the row in its status (and category) alone, while the
row's status is a case step's decision that nothing changed since, is unchanged too: the decision stands, the rule
the monitor follows (docs/monitor.md). Rows of the case DB that the file does not name are left alone.

How it is written is set-based: the file's keys in chunks of CHUNK, one SELECT ... IN per chunk for the rows the
case DB already holds (plain tuples, no ORM objects), then one multi-row INSERT of the chunk's new rows and one
executemany UPDATE of its changed ones - all in the caller's one transaction, households before members (a
member's household must exist). Memory beyond the parsed file is one chunk's rows.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from services.casedb.models import CaseHistory, Household, Member
from services.cases.roster import HOUSEHOLD_FIELDS, MEMBER_FIELDS, RosterFile

__all__ = ["CHUNK", "DECIDING_STEPS", "upsert_roster", "decided_at", "decision_stands"]

CHUNK = 2000  # keys per SELECT ... IN and rows per INSERT / UPDATE statement
DECIDING_STEPS = ("LABEL", "ANNOUNCE_LABEL")  # the steps that decide a household's status (its own topic)


def decided_at(session: Session) -> dict[str, dt.datetime]:
    """household_id -> when its status was last decided by a LABEL or ANNOUNCE_LABEL step."""
    rows = session.execute(select(CaseHistory.household_id, func.max(CaseHistory.recorded_at))
                           .where(CaseHistory.kind == "STEP", CaseHistory.step.in_(DECIDING_STEPS))
                           .group_by(CaseHistory.household_id))
    return {hid: at for hid, at in rows if at is not None}


def decision_stands(row: Mapping[str, Any], fields: Mapping[str, Any], decided: dt.datetime | None) -> bool:
    """The file differs from the row in the status (and category) alone, and the row's status is a case step's
    that nothing changed since: the export says nothing later than the decision, which stands - the rule the
    monitor follows for registry.households and registry.household-status (docs/monitor.md)."""
    differing = {f for f in HOUSEHOLD_FIELDS if row[f] != fields[f]}
    return (bool(differing) and differing <= {"monitoring_status", "category"} and decided is not None
            and decided >= row["updated_at"])


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start:start + CHUNK]


def _stored(session: Session, table: Table, key: str, keys: Sequence[str],
            fields: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The rows of `table` among `keys` (its primary key column `key`), as plain dicts of `fields`."""
    columns = [table.c[key], *(table.c[f] for f in fields)]
    return {row[0]: dict(zip(fields, row[1:])) for row in session.execute(select(*columns)
                                                                           .where(table.c[key].in_(keys)))}


def _update(session: Session, table: Table, key: str, fields: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """UPDATE table SET fields WHERE key = ... for each of `rows` (one executemany; bind names prefixed, as a bind
    parameter may not share a SET column's name)."""
    if rows:
        statement = (update(table).where(table.c[key] == bindparam(f"b_{key}"))
                     .values({f: bindparam(f"b_{f}") for f in fields}))
        session.execute(statement, [{f"b_{name}": value for name, value in row.items()} for row in rows])


def upsert_roster(session: Session, roster: RosterFile, now: dt.datetime) -> dict[str, int]:
    """Upsert the roster's households, then its members (see the module docstring); the counts of each outcome."""
    counts = {"households_added": 0, "households_updated": 0, "households_unchanged": 0,
              "members_added": 0, "members_updated": 0, "members_unchanged": 0}
    households, members = Household.__table__, Member.__table__
    assert isinstance(households, Table) and isinstance(members, Table)
    decided = decided_at(session)
    stored_fields = (*HOUSEHOLD_FIELDS, "updated_at")
    for keys in _chunks(list(roster.households)):
        existing = _stored(session, households, "household_id", keys, stored_fields)
        added, changed = [], []
        for hid in keys:
            fields, row = roster.households[hid], existing.get(hid)
            if row is None:
                added.append({"household_id": hid, **fields, "updated_at": now})
                counts["households_added"] += 1
            elif decision_stands(row, fields, decided.get(hid)):
                counts["households_unchanged"] += 1  # the case's later decision stands (as in the monitor)
            elif any(row[f] != fields[f] for f in HOUSEHOLD_FIELDS):
                changed.append({"household_id": hid, **fields, "updated_at": now})
                counts["households_updated"] += 1
            else:
                counts["households_unchanged"] += 1
        if added:
            session.execute(insert(households), added)
        _update(session, households, "household_id", stored_fields, changed)
    for keys in _chunks(list(roster.members)):
        existing = _stored(session, members, "person_key", keys, MEMBER_FIELDS)
        added, changed = [], []
        for key in keys:
            fields, row = roster.members[key], existing.get(key)
            if row is None:
                added.append({"person_key": key, **fields})
                counts["members_added"] += 1
            elif any(row[f] != fields[f] for f in MEMBER_FIELDS):
                changed.append({"person_key": key, **fields})
                counts["members_updated"] += 1
            else:
                counts["members_unchanged"] += 1
        if added:
            session.execute(insert(members), added)
        _update(session, members, "person_key", MEMBER_FIELDS, changed)
    return counts
