"""The bureau's operations on cases: the interface the command line and the web desk use.

    cases = Cases(store)                               # a services.casedb.store.CaseStore; settings passed in
    cases.authenticate(name, password)                 -> UserView | None
    cases.visible_cases(user, county=, township=, rule=, severity=, step=)   -> [CaseSummary]  (the user's region)
    cases.case_detail(user, case_id)                   -> CaseDetail   (logs VIEW_CASE)
    cases.advance(user, case_id, step, on=, note=, authorised=, override=, category=)  -> CaseDetail
    cases.resolve_case(user, case_id, note) / acknowledge_alert(user, alert_id) / resolve_alert(user, alert_id, note)
    cases.audit_for_household(household_id)            -> [AuditView]
    cases.add_user(name, role, region, password)       -> UserView
    cases.set_password(name, password) / set_active(name, active)   (both end the user's desk sessions)
    cases.open_session(sid, name, max_age) / session_user(sid) / end_session(sid)   the desk's sessions
    cases.import_roster(path)                          -> RosterCounts

Every operation takes plain values (a user is a UserView or a user name, re-read from the DB each time), opens
its own transaction on the CaseStore's engine and raises schemas.errors exceptions with one-line messages:
NotFound (no such case, alert, user, household), StepRefused (the workflow, the user's role), NotInRegion (the
case lies outside the user's region), ConfigError (bad input: a role, region, password, category).

A step is checked by the pure table (services.cases.workflow.check) with facts read in the same transaction, whose
first statement locks the case row, so two workers cannot take the same step at once. Taking it writes, in ONE
transaction: the case_history STEP row (who, the day it happened, when it was recorded, note, override reason),
an AUTHORISE row for APPLY --authorised, and - for LABEL and ANNOUNCE_LABEL - the household's new status and an
outbox row carrying a povwatch.registry.HouseholdStatus record for `registry.household-status` (the relay publishes
it; `registry.households` is the roster load's alone).
ANNOUNCE_LABEL also resolves the case and its alerts. Every view and action is written to audit_log; a refused
attempt is logged as REFUSED with its reason (in a transaction of its own, as the attempt's is rolled back).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from connectors.framework import CONNECTOR_VERSION, DEFAULT_ZONE, local_today
from connectors.pseudonym import Pseudonymiser
from plumbing.clock import Clock, utc_now
from schemas.codec import Codec, default_codec
from schemas.errors import ConfigError
from schemas.thresholds import IncomeLines
from schemas.topics import REGISTRY_HOUSEHOLD_STATUS
from services.casedb import sessions as desk_sessions
from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.casedb.models import MAX_ID, AuditEntry, Case, CaseAlert, CaseHistory, Evidence, Household, User
from services.casedb.outbox import add_message
from services.casedb.store import CaseStore, evidence_events
from services.cases import overdue, queries
from services.cases.profile_view import ProfileView
from services.cases.profiles import read_profile_view
from services.cases.roster import read_roster
from services.cases.roster_import import upsert_roster
from services.cases.users import (
    UserView,
    check_name,
    check_password,
    check_region,
    covers,
    dummy_hash,
    hash_password,
    parse_role,
    verify_password,
)
from services.cases.views import AlertView, AuditView, CaseDetail, CaseSummary, RosterCounts
from services.cases.workflow import Request, Role, Step, check, status_after, workflow_of

__all__ = ["Cases", "FOCUS_CATEGORIES", "RESOLVER_ROLES", "household_record", "status_record", "StepRefused",
           "NotInRegion", "NotFound", "ANONYMOUS", "ANONYMOUS_FAILURES_PER_MINUTE"]

FOCUS_CATEGORIES = ("UNSTABLE_LIFTED", "MARGINAL", "SUDDEN_HARDSHIP")  # what a labelled household may be
RESOLVER_ROLES = frozenset({Role.TOWNSHIP, Role.COUNTY, Role.BUREAU})  # who may resolve a case or an alert
_T = TypeVar("_T")
ANONYMOUS = "anonymous"  # the audit log's name for a failed log-in with an unknown name (never what was typed)
ANONYMOUS_FAILURES_PER_MINUTE = 60  # audit rows for such failures, at most, per minute (a flood fills no disk)


def _known_id(value: int, what: str) -> int:
    """An id the database can hold; NotFound (404 on the desk) for any other - never a driver's overflow."""
    if not 0 < value <= MAX_ID:
        raise NotFound(f"no {what} {value}")
    return value



def household_record(h: Household, *, case_id: int, now: dt.datetime) -> dict[str, Any]:
    """The povwatch.registry.Household record of a households row, as the workflow of `case_id` changed it."""
    return {
        "household_id": h.household_id, "village_code": h.village_code, "head_person_key": h.head_person_key,
        "category": h.category, "monitoring_status": h.monitoring_status, "labour_capacity": h.labour_capacity,
        "per_capita_income": Decimal(h.per_capita_income).quantize(Decimal("0.01")),
        "household_size": h.household_size, "ingested_at": now,
        "source": {"department": "bureau", "feed": "case-workflow", "origin": f"case {case_id}", "row": 0,
                   "connector_version": CONNECTOR_VERSION},
    }


def status_record(h: Household, *, case_id: int, step: str, now: dt.datetime) -> dict[str, Any]:
    """The povwatch.registry.HouseholdStatus record of the status `step` of case `case_id` decided at `now`."""
    return {"household_id": h.household_id, "monitoring_status": h.monitoring_status, "category": h.category,
            "decided_at": now, "case_id": case_id, "step": step}


class Cases:
    """The case operations over one CaseStore (see the module docstring)."""

    def __init__(self, store: CaseStore, *, notice_days: int = 5, clock: Clock = utc_now,
                 zone: dt.tzinfo = DEFAULT_ZONE, pseudonym_key: Callable[[], bytes] | None = None,
                 codec: Codec | None = None, verify_days: int = queries.VERIFY_DAYS,
                 lines: IncomeLines | None = None) -> None:
        self._store = store
        self._notice_days = notice_days
        self._verify_days = verify_days  # an alert not acknowledged within this many days is overdue
        self._lines = lines or IncomeLines()  # the county income lines NOMINATE_NOTICE holds the income against
        self._clock = clock
        self._zone = zone
        self._pseudonym_key = pseudonym_key
        self._codec = codec or default_codec()

    @classmethod
    def from_settings(cls, store: CaseStore, settings: Any) -> Cases:
        """Notice and verification days, time zone and pseudonymisation key (asked for only by import_roster) from
        Settings."""
        return cls(store, notice_days=settings.case_notice_days, zone=settings.zone,
                   pseudonym_key=settings.checked_key, verify_days=settings.case_verify_days,
                   lines=settings.rules.income_lines)

    def close(self) -> None:
        self._store.close()

    def today(self) -> dt.date:
        return local_today(self._clock(), self._zone)

    # --- transactions --------------------------------------------------------------------------------------
    def _tx(self, work: Callable[[Session], _T], action: str) -> _T:
        """One transaction of services.casedb.transaction: retried after a lost race, errors translated."""
        return self._store.run(work, action)

    def _audit(self, session: Session, user: str, action: str, *, household_id: str | None = None,
               case_id: int | None = None, detail: str | None = None) -> None:
        session.add(AuditEntry(at=self._clock(), user_name=user[:64], action=action, household_id=household_id,
                               case_id=case_id, detail=detail))

    def _refused(self, user: UserView | str, exc: Exception, *, case_id: int | None = None,
                 alert_id: int | None = None) -> None:
        """Log a refused attempt (REFUSED, with the reason) in a transaction of its own."""
        name = user if isinstance(user, str) else user.actor

        def work(session: Session) -> None:
            household: str | None = None
            cid = case_id
            if alert_id is not None:
                alert = session.get(CaseAlert, alert_id)
                cid = alert.case_id if alert is not None else None
            case = session.get(Case, cid) if cid is not None else None
            if case is not None and case.subject_kind == "household":
                household = case.household_or_region
            self._audit(session, name, "REFUSED", household_id=household, case_id=cid if case else None,
                        detail=str(exc))

        self._tx(work, "log a refusal")

    @staticmethod
    def _user(session: Session, user: UserView | str) -> User:
        """The acting user's row; for `--as-system` (UserView.system) a copy, never added to the session, named
        "system:NAME" (what the history and the audit log then record) with the user's role and region."""
        name = user if isinstance(user, str) else user.name
        row = session.scalar(select(User).where(User.name == name))
        if row is None:
            raise NotFound(f"no user {name!r} (add one with: povwatch users add NAME --role ROLE --region CODE)")
        if not row.active:
            raise StepRefused(f"user {name} is deactivated")
        if isinstance(user, UserView) and user.system:
            return User(id=row.id, name=user.actor, role=row.role, region=row.region, password_hash="",
                        created_at=row.created_at, active=True)
        return row

    @staticmethod
    def _case(session: Session, me: User, case_id: int) -> Case:
        case = queries.load_case(session, _known_id(case_id, "case"))
        if case is None:
            raise NotFound(f"no case {case_id}")
        if not covers(me.region, case.village_code):
            raise NotInRegion(f"case {case_id} (village {case.village_code}) is outside the region {me.region} "
                              f"of {me.role} user {me.name}")
        return case

    # --- users ---------------------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, region: str, password: str) -> UserView:
        checked_role = parse_role(role)
        check_name(name)
        check_region(checked_role, region)
        hashed = hash_password(password)

        def work(session: Session) -> UserView:
            if session.scalar(select(User.id).where(User.name == name)) is not None:
                raise ConfigError(f"user {name} already exists")
            row = User(name=name, role=checked_role.value, region=region, password_hash=hashed,
                       created_at=self._clock(), active=True)
            session.add(row)
            session.flush()
            self._audit(session, name, "ADD_USER", detail=f"{checked_role} {region}")
            return UserView(row.id, row.name, checked_role, row.region)

        return self._tx(work, "add a user")

    def authenticate(self, name: str, password: str) -> UserView | None:
        """The user if the password is theirs and they are active; None otherwise (both logged). An unknown name
        costs the same password hash as a known one and is logged as ANONYMOUS, never with what was typed (it is
        often a password typed into the wrong field), at most ANONYMOUS_FAILURES_PER_MINUTE times a minute."""
        def work(session: Session) -> UserView | None:
            row = session.scalar(select(User).where(User.name == name)) if 0 < len(name) <= 64 else None
            if row is None:
                verify_password(dummy_hash(), password)
                since = self._clock() - dt.timedelta(minutes=1)
                recent = session.scalar(select(func.count()).select_from(AuditEntry).where(
                    AuditEntry.action == "LOGIN_FAILED", AuditEntry.user_name == ANONYMOUS, AuditEntry.at >= since))
                if (recent or 0) < ANONYMOUS_FAILURES_PER_MINUTE:
                    self._audit(session, ANONYMOUS, "LOGIN_FAILED", detail="unknown user name")
                return None
            ok = verify_password(row.password_hash, password) and row.active
            self._audit(session, row.name, "LOGIN" if ok else "LOGIN_FAILED",
                        detail=None if ok or row.active else "deactivated")
            return UserView(row.id, row.name, Role(row.role), row.region) if ok else None

        return self._tx(work, "authenticate")

    def set_password(self, name: str, password: str) -> int:
        """A new password for `name`; ends every desk session of the user. How many sessions were ended."""
        hashed = hash_password(check_password(password))

        def work(session: Session) -> int:
            row = self._any_user(session, name)
            row.password_hash = hashed
            ended = desk_sessions.end_sessions_of(session, row.name)
            self._audit(session, row.name, "PASSWORD_CHANGED", detail=f"{ended} desk session(s) ended")
            return ended

        return self._tx(work, "change a password")

    def set_active(self, name: str, active: bool) -> int:
        """Enable or disable `name`; disabling ends every desk session of the user. Sessions ended."""
        def work(session: Session) -> int:
            row = self._any_user(session, name)
            row.active = active
            ended = 0 if active else desk_sessions.end_sessions_of(session, row.name)
            self._audit(session, row.name, "ENABLE_USER" if active else "DISABLE_USER",
                        detail=None if active else f"{ended} desk session(s) ended")
            return ended

        return self._tx(work, "enable a user" if active else "disable a user")

    @staticmethod
    def _any_user(session: Session, name: str) -> User:
        row = session.scalar(select(User).where(User.name == name))
        if row is None:
            raise NotFound(f"no user {name[:64]!r} (povwatch users list)")
        return row

    # --- the desk's sessions (services/casedb/sessions.py) ---------------------------------------------------
    def open_session(self, sid: str, name: str, max_age: int) -> None:
        self._tx(lambda session: desk_sessions.open_session(session, sid, name, now=self._clock(),
                                                            max_age=max_age), "open a desk session")

    def session_user(self, sid: str) -> str | None:
        return self._tx(lambda session: desk_sessions.session_user(session, sid, now=self._clock()),
                        "read a desk session")

    def end_session(self, sid: str) -> None:
        self._tx(lambda session: desk_sessions.end_session(session, sid), "end a desk session")

    def user(self, name: str) -> UserView:
        def work(session: Session) -> UserView:
            row = self._user(session, name)
            return UserView(row.id, row.name, Role(row.role), row.region, row.active)

        return self._tx(work, "read a user")

    # --- reading -------------------------------------------------------------------------------------------
    def visible_cases(self, user: UserView | str, *, county: str | None = None, township: str | None = None,
                      rule: str | None = None, severity: str | None = None, step: str | None = None,
                      include_closed: bool = False) -> list[CaseSummary]:
        """The user's worklist: open cases of their region (and the filters), highest severity, then oldest
        first. `step` is a Step name or "NONE" (no step taken yet). Logged as VIEW_WORKLIST."""
        def work(session: Session) -> list[CaseSummary]:
            me = self._user(session, user)
            query = select(Case).options(selectinload(Case.evidence))
            for prefix in (me.region, county, township):
                if prefix:
                    query = query.where(Case.village_code.startswith(prefix, autoescape=True))
            if not include_closed:
                query = query.where(Case.status == "OPEN")
            if severity:
                query = query.where(Case.max_severity == severity.upper())
            if rule:
                query = query.where(Case.id.in_(select(Evidence.case_id).where(Evidence.rule == rule.upper()))
                                    | Case.id.in_(select(CaseAlert.case_id).where(CaseAlert.rule == rule.upper())))
            found = queries.summaries(session, list(session.scalars(query)), self.today(),
                                      verify_days=self._verify_days, zone=self._zone)
            if step:
                wanted = None if step.upper() == "NONE" else step.upper()
                found = [s for s in found if s.step == wanted]
            filters = ", ".join(f"{k}={v}" for k, v in (("county", county), ("township", township), ("rule", rule),
                                                         ("severity", severity), ("step", step)) if v)
            self._audit(session, me.name, "VIEW_WORKLIST", detail=f"{len(found)} case(s)"
                        + (f"; {filters}" if filters else ""))
            return found

        return self._tx(work, "list cases")

    def case_detail(self, user: UserView | str, case_id: int) -> CaseDetail:
        """The case page (VIEW_CASE in the audit log: who, when, which household and case)."""
        def work(session: Session) -> CaseDetail:
            me = self._user(session, user)
            case = self._case(session, me, case_id)
            self._audit(session, me.name, "VIEW_CASE", household_id=self._household_of(case), case_id=case.id)
            return queries.detail_of(session, case, role=Role(me.role), today=self.today(),
                                     notice_days=self._notice_days, verify_days=self._verify_days, zone=self._zone,
                                     lines=self._lines)

        try:
            return self._tx(work, "read a case")
        except NotInRegion as exc:
            self._refused(user, exc, case_id=case_id)
            raise

    @staticmethod
    def _household_of(case: Case) -> str | None:
        return case.household_or_region if case.subject_kind == "household" else None

    def household_profile(self, user: UserView | str | None, household_id: str, *,
                          audited: bool = True) -> ProfileView:
        """The household as the plan sees it (services/cases/profile_view.py): roster, latest facts per domain,
        income against its county's line, open alerts. A user sees only a household of their region (NotInRegion,
        logged as REFUSED); None: the command line's operator. Logged as VIEW_HOUSEHOLD unless `audited` is False
        (the desk's case page, whose view is logged as VIEW_CASE). NotFound for a household the case DB lacks."""
        def work(session: Session) -> ProfileView:
            me = self._user(session, user) if user is not None else None
            view = read_profile_view(session, household_id, today=self.today(), lines=self._lines)
            if me is not None and not covers(me.region, view.village_code):
                raise NotInRegion(f"household {household_id} (village {view.village_code}) is outside the region "
                                  f"{me.region} of {me.role} user {me.name}")
            if audited:
                self._audit(session, me.name if me is not None else "povwatch-cli", "VIEW_HOUSEHOLD",
                            household_id=household_id, case_id=view.case_id)
            return view

        try:
            return self._tx(work, "read a household's profile")
        except NotInRegion as exc:
            reason = str(exc)
            name = user if isinstance(user, str) else user.actor if user is not None else "povwatch-cli"
            self._tx(lambda session: self._audit(session, name, "REFUSED", household_id=household_id,
                                                 detail=reason), "log a refusal")
            raise

    def audit_for_household(self, household_id: str) -> list[AuditView]:
        def work(session: Session) -> list[AuditView]:
            rows = session.scalars(select(AuditEntry).where(AuditEntry.household_id == household_id)
                                   .order_by(AuditEntry.at, AuditEntry.id))
            return [AuditView(r.id, r.at, r.user_name, r.action, r.household_id, r.case_id, r.detail) for r in rows]

        return self._tx(work, "read the audit log")

    def steps_of_cases(self) -> dict[int, tuple[str | None, str | None, str | None]]:
        """Every case's (workflow, step, household monitoring status), for `povwatch cases list --json`."""
        def work(session: Session) -> dict[int, tuple[str | None, str | None, str | None]]:
            cases = list(session.scalars(select(Case).options(selectinload(Case.evidence))))
            return {s.id: (s.workflow, s.step, s.monitoring_status)
                    for s in queries.summaries(session, cases, self.today())}

        return self._tx(work, "read the cases' steps")

    # --- the workflow --------------------------------------------------------------------------------------
    def advance(self, user: UserView | str, case_id: int, step: str, *, on: dt.date | None = None,
                note: str | None = None, authorised: bool = False, override: str | None = None,
                category: str | None = None) -> CaseDetail:
        """Take `step` on the case (see the module docstring); StepRefused / NotInRegion (one line) if refused."""
        try:
            wanted = Step(step.upper())
        except ValueError:
            raise ConfigError(f"unknown step {step!r} ({', '.join(s.value for s in Step)})") from None
        if category is not None and category.upper() not in FOCUS_CATEGORIES:
            raise ConfigError(f"--category {category!r}: one of {', '.join(FOCUS_CATEGORIES)}")

        def work(session: Session) -> CaseDetail:
            now, today = self._clock(), self.today()
            me = self._user(session, user)
            _known_id(case_id, "case")
            # the first statement writes the case row: it is locked until commit (PostgreSQL: row lock; SQLite:
            # the write lock), so a concurrent step on the same case waits and then reads this one's outcome
            session.execute(update(Case).where(Case.id == case_id).values(updated_at=now))
            case = self._case(session, me, case_id)
            if case.subject_kind != "household":
                raise StepRefused(f"case {case_id} is a village case (a regional alert): the workflows are a "
                                  "household's; take them on the households' own cases")
            household = session.get(Household, case.household_or_region)
            if household is None:
                raise NotFound(f"household {case.household_or_region} of case {case_id} is not in the case DB: "
                               "import the bureau's roster first (povwatch cases roster FILE)")
            day = on or today
            if day > today:
                raise StepRefused(f"case {case_id}: --on {day} is in the future (today is {today})")
            opened = local_today(case.opened_at, self._zone)
            if day < opened:  # backdating before the case existed would let a notice "stand" before it went up
                raise StepRefused(f"case {case_id}: --on {day} is before the case was opened ({opened})")
            facts, progress = queries.facts_of(session, case, household, notice_days=self._notice_days,
                                               lines=self._lines, on=day)
            role = Role(me.role)
            refusal = check(facts, Request(wanted, role, day, authorised=authorised, override=override or None))
            if refusal is not None:
                raise StepRefused(f"case {case_id}: {refusal.reason}")
            if progress.last_on is not None and day < progress.last_on:
                raise StepRefused(f"case {case_id}: {wanted} on {day} would precede the last step, {progress.step} "
                                  f"on {progress.last_on}")
            if category is not None and wanted != Step.LABEL:
                raise StepRefused(f"case {case_id}: --category is given at LABEL only")
            flow = workflow_of(wanted, facts.workflow, facts.step)
            session.add(CaseHistory(case_id=case.id, household_id=household.household_id, kind="STEP",
                                    workflow=flow.value, step=wanted.value, by_user=me.name, on_day=day,
                                    recorded_at=now, note=note, override_reason=override or None))
            if wanted == Step.APPLY and authorised:
                session.add(CaseHistory(case_id=case.id, household_id=household.household_id, kind="AUTHORISE",
                                        workflow=flow.value, step=wanted.value, by_user=me.name, on_day=day,
                                        recorded_at=now, note="签字授权: 存款、车辆、住房查询 (signed authorisation "
                                                              "to query deposits, vehicles and housing)"))
            status = status_after(wanted)
            if status is not None:
                self._set_status(session, household, case, status, wanted, category, now)
            if wanted == Step.ANNOUNCE_LABEL:
                self._close(session, me, case, day, now, note or "风险消除 (risk eliminated)")
            self._audit(session, me.name, "ADVANCE", household_id=household.household_id, case_id=case.id,
                        detail=f"{wanted} on {day}" + (f"; override: {override}" if override else "")
                        + (f"; {note}" if note else ""))
            session.flush()
            return queries.detail_of(session, case, role=role, today=today, notice_days=self._notice_days,
                                     verify_days=self._verify_days, zone=self._zone, lines=self._lines)

        try:
            return self._tx(work, f"take {wanted} on case {case_id}")
        except StepRefused as exc:
            self._refused(user, exc, case_id=case_id)
            raise

    def _set_status(self, session: Session, household: Household, case: Case, status: str, step: Step,
                    category: str | None, now: dt.datetime) -> None:
        household.monitoring_status = status
        if step == Step.LABEL:
            if category is not None:
                household.category = category.upper()
            elif household.category not in FOCUS_CATEGORIES:
                household.category = "SUDDEN_HARDSHIP"
        household.updated_at = now
        session.flush()
        value = self._codec.encode("povwatch.registry.HouseholdStatus",
                                   status_record(household, case_id=case.id, step=step.value, now=now))
        add_message(session, REGISTRY_HOUSEHOLD_STATUS, household.household_id.encode("utf-8"), value, now)

    def _close(self, session: Session, me: User, case: Case, day: dt.date, now: dt.datetime, note: str) -> int:
        """Close the case and resolve its alerts (a RESOLVE history row); how many alerts were resolved."""
        case.status = "CLOSED"
        case.updated_at = now
        resolved = 0
        for alert in session.scalars(select(CaseAlert).where(CaseAlert.case_id == case.id,
                                                             CaseAlert.status != "RESOLVED")):
            alert.status, alert.resolved_by, alert.resolved_at, alert.updated_at = "RESOLVED", me.name, now, now
            resolved += 1
        session.add(CaseHistory(case_id=case.id, household_id=case.household_or_region, kind="RESOLVE", workflow=None,
                                step=None, by_user=me.name, on_day=day, recorded_at=now,
                                note=f"case closed, {resolved} alert(s) resolved: {note}"))
        return resolved

    def resolve_case(self, user: UserView | str, case_id: int, note: str) -> CaseDetail:
        """Close the case and resolve all its alerts (township, county or bureau users; a note is required)."""
        def work(session: Session) -> CaseDetail:
            now, today = self._clock(), self.today()
            me = self._user(session, user)
            _known_id(case_id, "case")
            session.execute(update(Case).where(Case.id == case_id).values(updated_at=now))
            case = self._case(session, me, case_id)
            self._may_resolve(me, f"case {case_id}")
            if case.status != "OPEN":
                raise StepRefused(f"case {case_id} is already closed")
            if not note or not note.strip():
                raise StepRefused(f"case {case_id}: resolving a case needs a note (why)")
            count = self._close(session, me, case, today, now, note.strip())
            self._audit(session, me.name, "RESOLVE_CASE", household_id=self._household_of(case), case_id=case.id,
                        detail=f"{count} alert(s) resolved; {note.strip()}")
            session.flush()
            return queries.detail_of(session, case, role=Role(me.role), today=today, notice_days=self._notice_days,
                                     verify_days=self._verify_days, zone=self._zone, lines=self._lines)

        try:
            return self._tx(work, f"resolve case {case_id}")
        except StepRefused as exc:
            self._refused(user, exc, case_id=case_id)
            raise

    @staticmethod
    def _may_resolve(me: User, what: str) -> None:
        if Role(me.role) not in RESOLVER_ROLES:
            raise StepRefused(f"{what}: resolving needs a {'/'.join(sorted(RESOLVER_ROLES))} user, not a "
                              f"{me.role} user")

    def acknowledge_alert(self, user: UserView | str, alert_id: int) -> AlertView:
        """OPEN -> ACKNOWLEDGED (any user of the case's region); an acknowledged alert stays as it is."""
        return self._alert_action(user, alert_id, resolve=False, note=None)

    def resolve_alert(self, user: UserView | str, alert_id: int, note: str) -> AlertView:
        """One alert -> RESOLVED (township, county or bureau users; a note is required); the case stays open."""
        return self._alert_action(user, alert_id, resolve=True, note=note)

    def _alert_action(self, user: UserView | str, alert_id: int, *, resolve: bool, note: str | None) -> AlertView:
        def work(session: Session) -> AlertView:
            now, today = self._clock(), self.today()
            me = self._user(session, user)
            alert = session.get(CaseAlert, _known_id(alert_id, "alert"))
            if alert is None:
                raise NotFound(f"no alert {alert_id}")
            session.execute(update(Case).where(Case.id == alert.case_id).values(updated_at=now))
            case = self._case(session, me, alert.case_id)
            if alert.status == "RESOLVED":
                raise StepRefused(f"alert {alert_id} is already resolved (by {alert.resolved_by})")
            kind = "RESOLVE" if resolve else "ACKNOWLEDGE"
            if resolve:
                self._may_resolve(me, f"alert {alert_id}")
                if not note or not note.strip():
                    raise StepRefused(f"alert {alert_id}: resolving an alert needs a note (why)")
                alert.status, alert.resolved_by, alert.resolved_at = "RESOLVED", me.name, now
            elif alert.status == "OPEN":
                alert.status, alert.acknowledged_by, alert.acknowledged_at = "ACKNOWLEDGED", me.name, now
            else:
                kind = ""  # already acknowledged: nothing changes
            if kind:
                alert.updated_at = now
                session.add(CaseHistory(case_id=case.id, household_id=case.household_or_region, kind=kind,
                                        workflow=None, step=None, by_user=me.name, on_day=today, recorded_at=now,
                                        note=f"alert {alert.id} ({alert.rule} {alert.severity})"
                                        + (f": {note.strip()}" if note else "")))
                self._audit(session, me.name, f"{kind}_ALERT", household_id=self._household_of(case),
                            case_id=case.id, detail=f"alert {alert.id} {alert.rule}" + (f"; {note}" if note else ""))
            session.flush()
            evidence = list(case.evidence)
            due = overdue.deadlines(session, today=today, verify_days=self._verify_days, zone=self._zone,
                                    case_ids=[case.id])
            return queries.alert_view(alert, evidence, evidence_events(session, [e.alert_id for e in evidence]),
                                      due.get(alert.id))

        try:
            return self._tx(work, f"update alert {alert_id}")
        except StepRefused as exc:
            self._refused(user, exc, alert_id=alert_id)
            raise

    # --- the roster ----------------------------------------------------------------------------------------
    def import_roster(self, path: Path | str) -> RosterCounts:
        """Upsert the bureau's roster file into households and members; rejected rows are listed, not imported."""
        if self._pseudonym_key is None:
            raise ConfigError("importing a roster needs the pseudonymisation key (Cases(..., pseudonym_key=...))")
        roster = read_roster(Path(path), pseudonymiser=Pseudonymiser(self._pseudonym_key()), codec=self._codec,
                             clock=self._clock, zone=self._zone)

        def work(session: Session) -> RosterCounts:
            counts = upsert_roster(session, roster, self._clock())  # in bulk: services/cases/roster_import.py
            self._audit(session, "povwatch-cli", "IMPORT_ROSTER",
                        detail=f"{roster.file}: {len(roster.households)} household(s), {len(roster.members)} "
                               f"member(s), {roster.rejected} row(s) rejected")
            return RosterCounts(file=roster.file, read=roster.read, rejected=roster.rejected,
                                duplicates=roster.duplicates, rejects=tuple(roster.rejects), **counts)

        return self._tx(work, "import the roster")
