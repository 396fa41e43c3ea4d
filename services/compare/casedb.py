"""The bureau's side of comparison (比对) in the case DB: requests with their targets, answers, progress.

    create_request(store, department, ...)   one transaction: the request, its target persons (the case's household
                                             members, or every MONITORING household's in the user's region, from
                                             the `members` table), the outbox message for requests.<dept>.comparison
                                             and an audit entry. Only county and bureau users ask, inside their region.
    store_answers(store, results)            ComparisonResult records -> comparison_answers, once per event_id
    progress(store, now)                     every request: answered / partly answered / open, and for how long

Names and ID numbers never leave the case DB: the request carries person keys only.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.catalog import comparison_department
from schemas.codec import Codec
from schemas.errors import ConfigError, SchemaError
from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.casedb.models import (
    AuditEntry,
    Case,
    ComparisonAnswer,
    ComparisonRequest,
    ComparisonTarget,
    Household,
    Member,
    User,
)
from services.casedb.outbox import add_message
from services.casedb.store import CaseStore
from services.compare.records import REQUEST_SCHEMA, RequestProgress, new_request_id, progress_of, request_record

__all__ = ["Created", "REQUEST_ROLES", "create_request", "store_answers", "progress"]

REQUEST_ROLES = ("county", "bureau")  # who compares (DATA_COMPARE: county and prefecture)


@dataclass(frozen=True)
class Created:
    request_id: str
    department: str
    case_id: int | None
    persons: int
    households: int
    outbox_id: int


def _user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not user.active:
        raise NotFound(f"no active user {name!r} (add one with `povwatch users add`)")
    if user.role not in REQUEST_ROLES:
        raise StepRefused(f"user {name} ({user.role}) may not request a comparison: county and bureau users do")
    return user


def _case_targets(session: Session, user: User, case_id: int) -> list[tuple[str, str]]:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    if not case.village_code.startswith(user.region):
        raise NotInRegion(f"case {case_id} lies outside the region {user.region} of user {user.name}")
    if case.subject_kind != "household":
        raise StepRefused(f"case {case_id} is a village case: a comparison asks about a household's members")
    if case.status != "OPEN":
        raise StepRefused(f"case {case_id} is {case.status}: no comparison for a closed case")
    members = session.execute(select(Member.person_key, Member.household_id)
                              .where(Member.household_id == case.household_or_region).order_by(Member.person_key)).all()
    if not members:
        raise NotFound(f"no members of household {case.household_or_region} in the case DB (import the roster with "
                       "`povwatch cases roster FILE`)")
    return [(key, household) for key, household in members]


def _monitored_targets(session: Session, user: User) -> list[tuple[str, str]]:
    rows = session.execute(
        select(Member.person_key, Member.household_id).join(Household, Household.household_id == Member.household_id)
        .where(Household.monitoring_status == "MONITORING", Household.village_code.startswith(user.region))
        .order_by(Member.household_id, Member.person_key)).all()
    if not rows:
        raise NotFound(f"no household with monitoring status MONITORING in region {user.region} "
                       "(import the roster with `povwatch cases roster FILE`)")
    return [(key, household) for key, household in rows]


def create_request(store: CaseStore, department: str, *, case_id: int | None, all_monitored: bool, by: str,
                   now: dt.datetime, codec: Codec, request_id: str | None = None) -> Created:
    """Store a comparison request and its outbox message in one transaction (see the module's docstring)."""
    try:
        entry = comparison_department(department)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    if (case_id is None) == (not all_monitored):
        raise ConfigError("give either --case CASE_ID or --all-monitored")
    rid = request_id or new_request_id()

    def work(session: Session) -> Created:
        user = _user(session, by)
        targets = _case_targets(session, user, case_id) if case_id is not None else _monitored_targets(session, user)
        keys = list(dict.fromkeys(key for key, _ in targets))
        session.add(ComparisonRequest(request_id=rid, department=entry.department, case_id=case_id,
                                      requested_by=user.name, requested_at=now, persons=len(keys)))
        session.flush()  # the request exists before its targets refer to it
        session.add_all(ComparisonTarget(request_id=rid, person_key=key, household_id=household)
                        for key, household in dict((k, h) for k, h in targets).items())
        value = codec.encode(REQUEST_SCHEMA, request_record(rid, entry.department, keys, now, case_id))
        message = add_message(session, entry.request_topic, rid.encode("ascii"), value, now)
        households = sorted({household for _, household in targets})
        session.add(AuditEntry(at=now, user_name=user.name, action="COMPARE_REQUEST",
                               household_id=households[0] if case_id is not None else None, case_id=case_id,
                               detail=f"{entry.department} request {rid}: {len(keys)} persons of "
                                      f"{len(households)} households"))
        session.flush()
        return Created(rid, entry.department, case_id, len(keys), len(households), message.id)

    return store.run(work, "store the comparison request")


def _answer(result: Mapping[str, Any], now: dt.datetime) -> ComparisonAnswer:
    try:
        return ComparisonAnswer(
            event_id=str(result["event_id"]), request_id=str(result["request_id"]),
            department=str(result["department"]), person_key=str(result["person_key"]), found=bool(result["found"]),
            summary=str(result["summary"]), records=[dict(r) for r in result["records"]], received_at=now)
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"comparison result {result.get('event_id', '?')}: {exc}") from None


def store_answers(store: CaseStore, results: Sequence[Mapping[str, Any]], now: dt.datetime) -> tuple[int, int]:
    """Store ComparisonResult records, each event_id once (a redelivered answer is a duplicate); returns
    (stored, duplicates). One transaction."""
    def work(session: Session) -> tuple[int, int]:
        ids = [str(r.get("event_id")) for r in results]
        known = set(session.scalars(select(ComparisonAnswer.event_id).where(ComparisonAnswer.event_id.in_(ids))))
        stored = 0
        for result, event_id in zip(results, ids, strict=True):
            if event_id in known:
                continue
            known.add(event_id)
            session.add(_answer(result, now))
            stored += 1
        session.flush()
        return stored, len(results) - stored

    return store.run(work, "store comparison answers")


def progress(store: CaseStore, now: dt.datetime) -> list[RequestProgress]:
    """Every request, oldest first, with how far its answers are."""
    def work(session: Session) -> list[RequestProgress]:
        requests = list(session.scalars(select(ComparisonRequest)
                                        .order_by(ComparisonRequest.requested_at, ComparisonRequest.request_id)))
        targets: dict[str, list[str]] = {}
        for rid, key in session.execute(select(ComparisonTarget.request_id, ComparisonTarget.person_key)):
            targets.setdefault(rid, []).append(key)
        answers: dict[str, dict[str, tuple[bool, dt.datetime]]] = {}
        for rid, key, found, at in session.execute(select(ComparisonAnswer.request_id, ComparisonAnswer.person_key,
                                                          ComparisonAnswer.found, ComparisonAnswer.received_at)):
            answers.setdefault(rid, {})[key] = (bool(found), at)
        return [progress_of(r.request_id, r.department, r.case_id, r.requested_by, r.requested_at,
                            targets.get(r.request_id, []), answers.get(r.request_id, {}), now) for r in requests]

    return store.run(work, "read comparison requests")
