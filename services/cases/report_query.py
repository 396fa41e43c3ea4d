"""The rows of the report (services/cases/report.py), read from the case DB: cases with their county, household
category and closing day; evidence received since a day; the workflow steps taken up to a day. Nothing else."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.casedb.models import Case, CaseHistory, Evidence, Household
from services.casedb.store import CaseStore
from services.cases.report import LOCAL, CaseRow, EvidenceRow, StepRow, local_day

__all__ = ["ReportRows", "load_rows"]

ReportRows = tuple[list[CaseRow], list[EvidenceRow], list[StepRow]]


def _category(kind: str, category: str | None, region: str = "") -> str:
    """The household's category; VILLAGE / TOWNSHIP for a regional case of a village / a township (9 digits)."""
    if kind == "village":
        return "TOWNSHIP" if len(region) == 9 else "VILLAGE"
    return category or "UNKNOWN"


def load_rows(store: CaseStore, *, since: dt.date, until: dt.date) -> ReportRows:
    """Cases opened by `until`; evidence received from `since` to `until`; steps dated up to `until` (days in
    Beijing time; the report filters them exactly)."""
    start = dt.datetime.combine(since, dt.time(), LOCAL)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), LOCAL)

    def work(session: Session) -> ReportRows:
        category = Household.category
        on_roster = (Case.subject_kind == "household") & (Household.household_id == Case.household_or_region)
        resolved = (select(CaseHistory.case_id, func.max(CaseHistory.on_day).label("day"))
                    .where(CaseHistory.kind == "RESOLVE").group_by(CaseHistory.case_id).subquery())
        cases = [CaseRow(case_id=row.id, county=row.village_code[:6],
                         category=_category(row.subject_kind, row.cat, row.village_code),
                         opened_on=local_day(row.opened_at),
                         closed_on=None if row.status == "OPEN" else row.day or local_day(row.updated_at))
                 for row in session.execute(
                     select(Case.id, Case.village_code, Case.subject_kind, Case.status, Case.opened_at,
                            Case.updated_at, category.label("cat"), resolved.c.day)
                     .outerjoin(Household, on_roster).outerjoin(resolved, resolved.c.case_id == Case.id)
                     .where(Case.opened_at < end))]
        evidence = [EvidenceRow(county=row.village_code[:6],
                                category=_category(row.subject_kind, row.cat, row.village_code),
                                received_on=local_day(row.received_at))
                    for row in session.execute(
                        select(Evidence.received_at, Case.village_code, Case.subject_kind, category.label("cat"))
                        .join(Case, Evidence.case_id == Case.id).outerjoin(Household, on_roster)
                        .where(Evidence.received_at >= start, Evidence.received_at < end))]
        steps = [StepRow(case_id=row.case_id, household_id=row.household_id, county=row.village_code[:6],
                         category=_category(row.subject_kind, row.cat, row.village_code), step=row.step or "",
                         on_day=row.on_day,
                         seq=row.id)
                 for row in session.execute(
                     select(CaseHistory.id, CaseHistory.case_id, CaseHistory.household_id, CaseHistory.step,
                            CaseHistory.on_day, Case.village_code, Case.subject_kind, category.label("cat"))
                     .join(Case, CaseHistory.case_id == Case.id).outerjoin(Household, on_roster)
                     .where(CaseHistory.kind == "STEP", CaseHistory.on_day <= until))]
        return cases, evidence, steps

    return store.run(work, "read the report's rows")
