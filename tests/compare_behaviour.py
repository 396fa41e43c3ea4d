"""Comparison requests, answers and the outbox in the case DB, written once for every backend (like
tests/casedb_behaviour.py): each backend's module defines a `store` fixture (an open CaseStore on empty tables)
and imports these tests by name - tests/unit/test_compare_casedb.py (SQLite) and
tests/integration/test_compare_postgres.py (the real PostgreSQL of scripts/postgres.sh)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from schemas.codec import default_codec
from schemas.errors import ConfigError
from services.casedb import outbox
from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.casedb.models import AuditEntry, Household, Member, User
from services.casedb.store import CaseStore
from services.compare.casedb import create_request, progress, store_answers
from services.compare.records import REQUEST_SCHEMA, result_event_id
from tests.casedb_behaviour import household_alert

NOW = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
VILLAGE = "652701100201"  # the village of tests.casedb_behaviour's alerts
HH1 = "652701000000000001"
OTHER_VILLAGE = "652722100201"  # another county (Jinghe)


def seed(store: CaseStore) -> int:
    """Users, two households (HH1 with two members, monitored; one elsewhere), and a case for HH1."""
    with Session(store.engine) as session, session.begin():
        for name, role, region in (("county1", "county", "652701"), ("bureau", "bureau", "6527"),
                                   ("village1", "village", VILLAGE), ("jinghe", "county", "652722")):
            session.add(User(name=name, role=role, region=region, password_hash="x", created_at=NOW, active=True))
        for hid, village, status in ((HH1, VILLAGE, "MONITORING"), ("HH-OTHER", OTHER_VILLAGE, "MONITORING"),
                                     ("HH-NOT", VILLAGE, "NOT_INCLUDED")):
            session.add(Household(household_id=hid, village_code=village, head_person_key=f"{hid}-a",
                                  category="MARGINAL", monitoring_status=status, labour_capacity="ABLE",
                                  per_capita_income=Decimal("8000.00"), household_size=2, updated_at=NOW))
        session.flush()
        for hid in (HH1, "HH-OTHER", "HH-NOT"):
            for suffix, relation in (("a", "户主"), ("b", "配偶")):
                session.add(Member(person_key=f"{hid}-{suffix}", household_id=hid, name="测试", relation=relation,
                                   sex="男", birth_date=dt.date(1970, 1, 1)))
    return store.record_household_alert(household_alert("cmp-a1")).case_id


def _answer(request_id: str, key: str, found: bool) -> dict[str, Any]:
    return {"event_id": result_event_id(request_id, key), "request_id": request_id, "department": "pboc",
            "person_key": key, "found": found, "records": [{"feed": "deposit-loan", "deposit_balance": "100.00"}]
            if found else [], "summary": "人民银行博州中心支行查到1条记录" if found else "未查到", "answered_at": NOW}


def test_a_request_for_a_case_stores_its_targets_and_its_outbox_message(store: CaseStore) -> None:
    case_id = seed(store)
    created = create_request(store, "pboc", case_id=case_id, all_monitored=False, by="county1", now=NOW,
                             codec=default_codec(), request_id="r1")
    assert (created.request_id, created.persons, created.households) == ("r1", 2, 1)
    [row] = outbox.pending(store)
    assert (row.id, row.topic, row.key) == (created.outbox_id, "requests.pboc.comparison", b"r1")
    record = default_codec().decode(row.value, expect=REQUEST_SCHEMA).record
    assert record["person_keys"] == [f"{HH1}-a", f"{HH1}-b"] and record["case_id"] == case_id
    with Session(store.engine) as session:
        [audit] = session.query(AuditEntry).all()
        assert (audit.user_name, audit.action, audit.household_id, audit.case_id) == (
            "county1", "COMPARE_REQUEST", HH1, case_id)
    [p] = progress(store, NOW + dt.timedelta(hours=2))
    assert (p.state, p.persons, p.answered, p.since) == ("open", 2, 0, dt.timedelta(hours=2))


def test_all_monitored_takes_the_users_region(store: CaseStore) -> None:
    seed(store)
    county = create_request(store, "public-security", case_id=None, all_monitored=True, by="county1", now=NOW,
                            codec=default_codec())
    assert (county.persons, county.households) == (2, 1)  # HH1 only: HH-OTHER is in Jinghe, HH-NOT not monitored
    bureau = create_request(store, "public-security", case_id=None, all_monitored=True, by="bureau", now=NOW,
                            codec=default_codec())
    assert (bureau.persons, bureau.households) == (4, 2)
    assert [r.id for r in outbox.pending(store)] == [county.outbox_id, bureau.outbox_id]


def test_who_may_ask_and_about_what(store: CaseStore) -> None:
    case_id = seed(store)
    codec = default_codec()
    with pytest.raises(StepRefused, match="village1 \\(village\\) may not request a comparison"):
        create_request(store, "pboc", case_id=case_id, all_monitored=False, by="village1", now=NOW, codec=codec)
    with pytest.raises(NotInRegion, match="outside the region 652722"):
        create_request(store, "pboc", case_id=case_id, all_monitored=False, by="jinghe", now=NOW, codec=codec)
    with pytest.raises(NotFound, match="no active user 'nobody'"):
        create_request(store, "pboc", case_id=case_id, all_monitored=False, by="nobody", now=NOW, codec=codec)
    with pytest.raises(NotFound, match="no case 999"):
        create_request(store, "pboc", case_id=999, all_monitored=False, by="county1", now=NOW, codec=codec)
    with pytest.raises(ConfigError, match="health answers no comparison requests"):
        create_request(store, "health", case_id=case_id, all_monitored=False, by="county1", now=NOW, codec=codec)
    with pytest.raises(ConfigError, match="either --case"):
        create_request(store, "pboc", case_id=None, all_monitored=False, by="county1", now=NOW, codec=codec)
    assert outbox.pending(store) == [] and progress(store, NOW) == []  # nothing stored by a refusal


def test_answers_are_stored_once_and_make_a_request_partly_then_fully_answered(store: CaseStore) -> None:
    case_id = seed(store)
    create_request(store, "pboc", case_id=case_id, all_monitored=False, by="county1", now=NOW,
                   codec=default_codec(), request_id="r2")
    first = _answer("r2", f"{HH1}-a", True)
    assert store_answers(store, [first, first], NOW + dt.timedelta(minutes=5)) == (1, 1)
    [p] = progress(store, NOW + dt.timedelta(hours=1))
    assert (p.state, p.answered, p.found, p.since) == ("partly answered", 1, 1, dt.timedelta(hours=1))
    assert store_answers(store, [first, _answer("r2", f"{HH1}-b", False)], NOW + dt.timedelta(minutes=30)) == (1, 1)
    [p] = progress(store, NOW + dt.timedelta(days=3))
    assert (p.state, p.answered, p.found) == ("answered", 2, 1)
    assert p.since == dt.timedelta(minutes=30)  # how long the answers took
    # an answer to a request this DB never made is kept, and changes nothing here
    assert store_answers(store, [_answer("elsewhere", "k", True)], NOW) == (1, 0)
    assert [q.request_id for q in progress(store, NOW)] == ["r2"]


def test_outbox_rows_are_marked_published_in_order(store: CaseStore) -> None:
    with Session(store.engine) as session, session.begin():
        ids = [outbox.add_message(session, "registry.households", f"h{i}".encode(), bytes([i]),
                                  NOW + dt.timedelta(seconds=i)) for i in range(5)]
        session.flush()
        numbers = [m.id for m in ids]
    assert [r.id for r in outbox.pending(store)] == numbers
    assert [r.id for r in outbox.pending(store, limit=2)] == numbers[:2]
    outbox.mark_published(store, numbers[:3], NOW)
    assert [r.id for r in outbox.pending(store)] == numbers[3:]
    assert outbox.counts(store) == (2, 3)
    outbox.mark_published(store, numbers, NOW + dt.timedelta(hours=1))
    assert outbox.counts(store) == (0, 5)
