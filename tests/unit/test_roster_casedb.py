"""`povwatch roster load`'s case-DB half (services/roster_casedb.py) on real SQLite files: when a case DB counts as
configured, the households and members it gets (names kept there), and the one line it says when it could not."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from plumbing.settings import Settings
from services import roster_casedb
from services.casedb.database import open_database
from services.casedb.models import Household, Member
from tests.integration.ops_world import households, roster_file


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_configured_means_set_or_the_default_file_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POVWATCH_CASE_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert not roster_casedb.configured(Settings())  # the default URL, and no var/povwatch.db here
    assert roster_casedb.configured(Settings(case_db=f"sqlite:///{tmp_path / 'cases.db'}"))
    monkeypatch.setenv("POVWATCH_CASE_DB", "postgresql://u@db.example/cases")
    assert roster_casedb.configured(Settings())
    monkeypatch.delenv("POVWATCH_CASE_DB")
    (tmp_path / "var").mkdir()
    open_database("sqlite:///var/povwatch.db").close()
    assert roster_casedb.configured(Settings())  # the default case DB in use on this host


def test_a_configured_sqlite_case_db_gets_the_households_and_members(tmp_path: Path) -> None:
    first, second = households("RCDB", 2, members=3, status="未纳入")
    roster = roster_file(tmp_path / "roster.csv", [first, second])
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    done = roster_casedb.refresh(Settings(case_db=db), roster)
    assert (done.refreshed, done.failed) == (True, False)
    assert done.line == ("case DB refreshed: households added 2  updated 0  unchanged 0; members added 6  updated 0  "
                         "unchanged 0")
    store = open_database(db)
    try:
        with Session(store.engine) as session:
            assert sorted(h.household_id for h in session.scalars(select(Household))) == [first.hid, second.hid]
            names = sorted((m.household_id, m.name) for m in session.scalars(select(Member)))
    finally:
        store.close()
    assert names == sorted([(h.hid, n) for h in (first, second) for n in ("测试甲", "测试乙", "测试丙")])
    again = roster_casedb.refresh(Settings(case_db=db), roster)
    assert again.counts.members_unchanged == 6 and again.counts.households_unchanged == 2
    assert again.as_dict()["counts"]["members_unchanged"] == 6


def test_no_case_db_configured_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POVWATCH_CASE_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    roster = roster_file(tmp_path / "roster.csv", households("RCDB-N", 1))
    done = roster_casedb.refresh(Settings(), roster)
    assert (done.refreshed, done.failed) == (False, False)
    assert done.line == (f"case DB not refreshed: no case DB configured (POVWATCH_CASE_DB); run `povwatch cases "
                         f"roster {roster}` where the case DB is reachable")
    assert not (tmp_path / "var").exists()  # no case DB made on a host that has none


def test_an_unreachable_case_db_says_so_in_one_line(tmp_path: Path) -> None:
    roster = roster_file(tmp_path / "roster.csv", households("RCDB-U", 1))
    port = _closed_port()
    done = roster_casedb.refresh(Settings(case_db=f"postgresql://povwatch:secret@127.0.0.1:{port}/cases"), roster)
    assert (done.refreshed, done.failed) == (False, True)
    assert done.line.startswith("case DB not refreshed: ") and "\n" not in done.line
    assert f"127.0.0.1:{port}" in done.line and "secret" not in done.line  # where, never the password
    assert done.line.endswith(f"run `povwatch cases roster {roster}` where the case DB is reachable")
