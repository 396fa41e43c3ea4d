"""The household's profile in the case DB: profiles.household records stored in `household_profiles`, and what the
case operations read from it (the profile view, the income that counts for risk elimination).

    profile_row(record)                        the decoded povwatch.profiles.HouseholdProfile record as a row's values
                                               (SchemaError, one line, if it is not one)
    record_profiles(store, items)              [(key, record or None)] -> one outcome per item, in ONE transaction
    income_of(session, household, on, lines)   the IncomeStanding of services/cases/elimination.py
    alert_states(session, household_id)         (rule, status) of the household's case alerts
    read_profile_view(session, household_id, today=, lines=)   -> services.cases.profile_view.ProfileView (NotFound)

Storing is idempotent and ordered by the profile's own clock: a profile replaces the stored one only if its
updated_at is not older (an equal one replaces too: the monitor's latest word for that moment); an older one is
`STALE` and changes nothing; the same profile again is a `DUPLICATE`. The replacement is a compare-and-set
(`UPDATE ... WHERE updated_at <= new`), so two writers racing on one household never put the older profile back; a
race on the first insert is retried by the CaseStore's transaction. A tombstone (a null value on the compacted
topic) deletes the household's profile. NUL characters in the profile's text are stored as U+FFFD (PostgreSQL
refuses NUL), as the alerts' are.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, delete, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from schemas.errors import SchemaError
from schemas.thresholds import IncomeLines
from services.casedb.errors import NotFound
from services.casedb.models import Case, CaseAlert, Household, HouseholdProfile, Member
from services.casedb.store import NUL_REPLACEMENT, CaseStore
from services.cases.elimination import IncomeStanding, income_standing
from services.cases.profile_view import (
    OpenAlert,
    ProfileView,
    RosterHousehold,
    RosterMember,
    StoredProfile,
    build_profile_view,
)

__all__ = ["STORED", "REPLACED", "DUPLICATE", "STALE", "DELETED", "ABSENT", "OUTCOMES", "profile_row",
           "record_profiles", "income_of", "alert_states", "read_profile_view"]

STORED, REPLACED, DUPLICATE, STALE, DELETED, ABSENT = "stored", "replaced", "duplicate", "stale", "deleted", "absent"
OUTCOMES = (STORED, REPLACED, DUPLICATE, STALE, DELETED, ABSENT)  # ABSENT: a tombstone for no stored profile
_FACT_TEXT = ("domain", "topic", "department", "feed", "event_id")
_MAX_AMOUNT = Decimal("1e12")


def _text(value: Any) -> str:
    return str(value).replace("\x00", NUL_REPLACEMENT)


def _fact(household_id: str, index: int, fact: Any) -> dict[str, Any]:
    where = f"profile {household_id}: facts[{index}]"
    if not isinstance(fact, Mapping):
        raise SchemaError(f"{where} is not a record")
    out: dict[str, Any] = {}
    for name in _FACT_TEXT:
        value = fact.get(name)
        if not isinstance(value, str) or not value:
            raise SchemaError(f"{where}.{name} must be text")
        out[name] = _text(value)
    person = fact.get("person_key")
    if person is not None and not isinstance(person, str):
        raise SchemaError(f"{where}.person_key must be text or null")
    out["person_key"] = _text(person) if person else None
    day = fact.get("day")
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise SchemaError(f"{where}.day must be a date")
    out["day"] = day.isoformat()
    values = fact.get("values")
    if not isinstance(values, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in values.items()):
        raise SchemaError(f"{where}.values must map field names to text")
    out["values"] = {_text(k): _text(v) for k, v in sorted(values.items())}
    return out


def profile_row(record: Any) -> dict[str, Any]:
    """The values of a household_profiles row for a decoded HouseholdProfile record; SchemaError if it is not one."""
    if not isinstance(record, Mapping):
        raise SchemaError(f"a profile is a record, not {type(record).__name__}")
    household_id = record.get("household_id")
    if not isinstance(household_id, str) or not household_id.strip() or len(household_id) > 64:
        raise SchemaError("profile: household_id must be text of 1 to 64 characters")
    village = record.get("village_code")
    if not isinstance(village, str) or len(village) != 12 or not village.isascii() or not village.isdigit():
        raise SchemaError(f"profile {household_id}: village_code must be a 12-digit village code")
    facts = record.get("facts")
    if not isinstance(facts, list | tuple):
        raise SchemaError(f"profile {household_id}: facts must be a list")
    year, income = record.get("income_year"), record.get("income_per_capita")
    if year is not None and (not isinstance(year, int) or isinstance(year, bool) or not 1900 <= year <= 2200):
        raise SchemaError(f"profile {household_id}: income_year must be a year")
    if income is not None:
        if not isinstance(income, Decimal) or not income.is_finite() or not 0 <= income < _MAX_AMOUNT:
            raise SchemaError(f"profile {household_id}: income_per_capita must be an amount of CNY")
        income = income.quantize(Decimal("0.01"))
    if (year is None) != (income is None):
        raise SchemaError(f"profile {household_id}: income_year and income_per_capita go together")
    updated = record.get("updated_at")
    if not isinstance(updated, dt.datetime) or updated.tzinfo is None:
        raise SchemaError(f"profile {household_id}: updated_at must be a timestamp")
    return {"household_id": _text(household_id), "village_code": village,
            "facts": [_fact(household_id, i, f) for i, f in enumerate(facts)], "income_year": year,
            "income_per_capita": income, "updated_at": updated.astimezone(dt.UTC)}


def _same(row: HouseholdProfile, values: Mapping[str, Any]) -> bool:
    stored_income = Decimal(row.income_per_capita) if row.income_per_capita is not None else None
    return bool(row.village_code == values["village_code"] and row.facts == values["facts"]
                and row.income_year == values["income_year"] and stored_income == values["income_per_capita"]
                and row.updated_at == values["updated_at"])


def _changed(result: object) -> int:
    """The rows an UPDATE or DELETE changed."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


class _Stored:
    """The batch's household_profiles rows, read in one SELECT ... IN: household_id -> row (None: no row). A row the
    batch adds is kept here unflushed; one it updates or deletes by statement is forgotten, and read again (with
    the session flushed first) if the batch names the household again."""

    def __init__(self, session: Session, keys: Sequence[str]) -> None:
        self._session = session
        self._rows: dict[str, HouseholdProfile | None] = dict.fromkeys(keys)
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), 500):
            for row in session.scalars(select(HouseholdProfile).where(
                    HouseholdProfile.household_id.in_(wanted[start:start + 500]))
                    .execution_options(populate_existing=True)):
                self._rows[row.household_id] = row

    def get(self, key: str) -> HouseholdProfile | None:
        if key not in self._rows:
            self._session.flush()
            self._rows[key] = self._session.get(HouseholdProfile, key, populate_existing=True)
        return self._rows[key]

    def added(self, row: HouseholdProfile) -> None:
        self._session.add(row)
        self._rows[row.household_id] = row

    def forget(self, key: str, *, deleting: bool = False) -> None:
        """The row is about to be changed by a statement: an object the batch added is flushed first, and the
        object is read again when asked; one to be deleted leaves the session (a new row may take its key)."""
        row = self._rows.pop(key, None)
        if row is not None and inspect(row).pending:
            self._session.flush()
        held = self._session.identity_map.get(identity_key(HouseholdProfile, key)) if deleting else None
        if held is not None:
            self._session.expunge(held)


def _upsert(session: Session, stored: _Stored, values: Mapping[str, Any]) -> str:
    current = stored.get(values["household_id"])
    if current is None:
        stored.added(HouseholdProfile(**values))  # a concurrent first insert: IntegrityError at the batch's flush,
        return STORED                             # and the transaction is retried (CaseStore.run)
    if values["updated_at"] < current.updated_at:
        return STALE
    if _same(current, values):
        return DUPLICATE
    stored.forget(values["household_id"])
    changed = session.execute(
        update(HouseholdProfile)
        .where(HouseholdProfile.household_id == values["household_id"],
               HouseholdProfile.updated_at <= values["updated_at"])
        .values(**{k: v for k, v in values.items() if k != "household_id"})
        .execution_options(synchronize_session=False))
    return REPLACED if _changed(changed) else STALE  # rowcount 0: a newer profile was committed meanwhile


def record_profiles(store: CaseStore, items: Sequence[tuple[str, Mapping[str, Any] | None]]) -> list[str]:
    """Store (key, record) pairs in ONE transaction - a None record is a tombstone for the household `key` - and
    return an outcome per pair (OUTCOMES). SchemaError (a record that is not a profile) or RecordRefused (the DB
    refuses it) for the whole batch, nothing stored; DatabaseUnavailable during an outage. Commit offsets only
    after this returns. The batch's stored rows are read in one SELECT ... IN, its new rows inserted together."""
    rows: list[tuple[str, dict[str, Any] | None]] = [
        (key, profile_row(record) if record is not None else None) for key, record in items]

    def work(session: Session) -> list[str]:
        out = []
        stored = _Stored(session, [values["household_id"] for _, values in rows if values is not None])
        with session.no_autoflush:
            for key, values in rows:
                if values is None:
                    stored.forget(key, deleting=True)
                    gone = session.execute(delete(HouseholdProfile).where(HouseholdProfile.household_id == key)
                                           .execution_options(synchronize_session=False))
                    out.append(DELETED if _changed(gone) else ABSENT)
                else:
                    out.append(_upsert(session, stored, values))
        session.flush()  # a race on a first insert surfaces here, inside the retry loop
        return out

    return store.run(work, "record household profiles")


# --- reading ---------------------------------------------------------------------------------------------------
def _county_line(lines: IncomeLines, village_code: str) -> Any:
    return lambda year: lines.line(village_code[:6], year)


def income_of(session: Session, household: Household, *, on: dt.date, lines: IncomeLines) -> IncomeStanding | None:
    """The household's income that counts on day `on` (elimination.income_standing): its profile's latest, else
    the roster's as last year's, against its county's line."""
    profile = session.get(HouseholdProfile, household.household_id)
    return income_standing(
        profile_income=profile.income_per_capita if profile is not None else None,
        profile_year=profile.income_year if profile is not None else None,
        roster_income=household.per_capita_income, on=on, line=_county_line(lines, household.village_code))


def alert_states(session: Session, household_id: str) -> tuple[tuple[str, str], ...]:
    """(rule, status) of every case alert of the household, oldest first."""
    return tuple((rule, status) for rule, status in session.execute(
        select(CaseAlert.rule, CaseAlert.status).where(CaseAlert.household_id == household_id)
        .order_by(CaseAlert.id)))


def read_profile_view(session: Session, household_id: str, *, today: dt.date, lines: IncomeLines) -> ProfileView:
    """The household as the plan sees it (services/cases/profile_view.py); NotFound if the case DB knows neither
    its roster rows nor a profile of it."""
    household = session.get(Household, household_id)
    profile = session.get(HouseholdProfile, household_id)
    if household is None and profile is None:
        raise NotFound(f"no household {household_id} in the case DB (neither in the roster nor profiled)")
    members = [RosterMember(m.person_key, m.name, m.relation, m.sex, m.birth_date) for m in session.scalars(
        select(Member).where(Member.household_id == household_id))] if household is not None else []
    case = session.scalar(select(Case).where(Case.subject_kind == "household", Case.household_or_region == household_id,
                                             Case.status == "OPEN"))
    alerts = [OpenAlert(a.id, a.case_id, a.rule, a.severity, a.status, a.opened_at) for a in session.scalars(
        select(CaseAlert).where(CaseAlert.case_id == case.id).order_by(CaseAlert.id))] if case is not None else []
    stored = StoredProfile(profile.village_code, list(profile.facts or ()), profile.income_year,
                           Decimal(profile.income_per_capita) if profile.income_per_capita is not None else None,
                           profile.updated_at) if profile is not None else None
    village = household.village_code if household is not None else stored.village_code  # type: ignore[union-attr]
    if household is not None:
        income = income_of(session, household, on=today, lines=lines)
    else:
        income = income_standing(profile_income=stored.income_per_capita if stored else None,
                                 profile_year=stored.income_year if stored else None, roster_income=None, on=today,
                                 line=_county_line(lines, village))
    roster = RosterHousehold(household.village_code, household.category, household.monitoring_status,
                             household.labour_capacity, household.household_size,
                             Decimal(household.per_capita_income)) if household is not None else None
    return build_profile_view(household_id, household=roster, members=members, profile=stored, alerts=alerts,
                              case_id=case.id if case is not None else None, income=income, today=today)
