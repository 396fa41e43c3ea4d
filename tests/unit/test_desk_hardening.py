"""Issue #13 item 6: the desk closed where it leaked, each weakness as a test (on a real SQLite case DB prepared by
tests/desk_world.py; tests/integration/test_desk_postgres.py runs the session tests again on PostgreSQL).

  * sessions are the case DB's: logout, a password change and `users disable` end them on every desk process
    (two app instances on one DB; a "restarted" desk: a new app over the same DB and secret);
  * the log-in throttle: by name AND client address, a short delay (never a lock-out of the real user), bounded
    memory, not bypassed by flooding other names; unknown names cost a password hash like known ones;
  * weak passwords refused; a failed log-in stores at most 64 characters of the name and never the password; audit
    rows for unknown names are bounded per minute;
  * a step cannot be dated before the case was opened (the 5-day notice cannot be skipped by backdating);
  * ids beyond the database's integer range are 404.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from schemas.errors import ConfigError
from services.casedb.models import AuditEntry, Case
from services.casedb.store import CaseStore
from services.cases import store as cases_store
from services.cases.store import Cases
from services.cases.users import check_name, check_password
from services.desk.app import create_app
from services.desk.sessions import COOKIE, LoginThrottle
from tests.desk_world import PASSWORD, World
from tests.unit.test_desk_app import (  # noqa: F401  (fixtures)
    SECRET,
    TODAY,
    cases,
    csrf_of,
    login,
    prepared,
    problem,
    steps_of,
    store,
    world,
)


def desk(cases: Cases, *, address: str = "10.0.0.7", **options: Any) -> TestClient:  # noqa: F811
    """A desk process over `cases` (a new app: what a restart or a second replica is), seen from `address`."""
    app = create_app(cases, secret=SECRET, today=lambda: TODAY, **options)
    return TestClient(app, base_url="https://testserver", follow_redirects=False, client=(address, 50000),
                      raise_server_exceptions=False)


def stolen(client: TestClient, other: TestClient) -> TestClient:
    other.cookies.update(dict(client.cookies))
    return other


# --- server-side sessions ------------------------------------------------------------------------------------
def test_logout_on_one_replica_ends_the_session_on_the_other(cases: Cases) -> None:  # noqa: F811
    first, second = desk(cases), desk(cases)
    token = login(first, "cun")
    copy = dict(first.cookies)
    stolen(first, second)
    assert second.get("/cases").status_code == 200  # one session, honoured by both replicas
    assert first.post("/logout", data={"csrf": token}).status_code == 303
    second.cookies.clear()
    second.cookies.update(copy)
    assert second.get("/cases").status_code == 303  # the other replica refuses the logged-out session


def test_a_stolen_cookie_is_refused_after_logout_and_restart(cases: Cases) -> None:  # noqa: F811
    before = desk(cases)
    token = login(before, "cun")
    copy = dict(before.cookies)
    before.post("/logout", data={"csrf": token})
    after_restart = desk(cases)  # a new process: nothing of the old one's memory
    after_restart.cookies.update(copy)
    assert after_restart.get("/cases").status_code == 303


def test_a_session_survives_a_restart(cases: Cases) -> None:  # noqa: F811
    before = desk(cases)
    login(before, "cun")
    after_restart = stolen(before, desk(cases))
    assert after_restart.get("/cases").status_code == 200


def test_a_password_change_ends_every_session_of_the_user(cases: Cases) -> None:  # noqa: F811
    one, two, other = desk(cases), desk(cases, address="10.0.0.8"), desk(cases)
    login(one, "cun")
    login(two, "cun")
    login(other, "xiang")
    cases.set_password("cun", "a-new-password-2026")
    assert one.get("/cases").status_code == 303 and two.get("/cases").status_code == 303
    assert other.get("/cases").status_code == 200  # another user's session is not touched
    login(one, "cun", "a-new-password-2026")
    assert one.get("/cases").status_code == 200


def test_disabling_a_user_ends_their_sessions_and_enabling_needs_a_new_log_in(cases: Cases) -> None:  # noqa: F811
    client = desk(cases)
    login(client, "cun")
    copy = dict(client.cookies)
    cases.set_active("cun", False)
    assert client.get("/cases").status_code == 303
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": token}).status_code == 401
    cases.set_active("cun", True)
    replay = desk(cases)
    replay.cookies.update(copy)
    assert replay.get("/cases").status_code == 303  # the old session stays ended
    login(client, "cun")
    assert client.get("/cases").status_code == 200


def test_sessions_are_stored_hashed(cases: Cases, store: CaseStore) -> None:  # noqa: F811
    from services.casedb.models import DeskSessionRow

    client = desk(cases)
    login(client, "cun")
    with Session(store.engine) as session:
        rows = list(session.scalars(select(DeskSessionRow)))
    assert [r.user_name for r in rows] == ["cun"]
    assert rows[0].sid_hash not in client.cookies[COOKIE]  # the cookie's id is not stored as it is


# --- the log-in throttle -------------------------------------------------------------------------------------
def guess(client: TestClient, name: str, password: str = "guess-guess-guess") -> int:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"name": name, "password": password, "csrf": token}).status_code


def test_an_attacker_cannot_lock_the_real_user_out(cases: Cases) -> None:  # noqa: F811
    throttle = LoginThrottle()
    attacker, user = desk(cases, login_throttle=throttle), desk(cases, address="10.1.1.1", login_throttle=throttle)
    login(user, "cun")  # the user's usual address
    user.post("/logout", data={"csrf": csrf_of(user.get("/cases").text)})
    codes = [guess(attacker, "cun") for _ in range(30)]
    assert codes[:5] == [401] * 5 and 429 in codes  # the attacker is slowed down
    assert guess(user, "cun", PASSWORD) == 303  # the real user, from their usual address, still gets in


def test_the_throttle_is_a_short_delay_not_a_lock() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(8):
        throttle.failed("cun", "10.0.0.7")
    wait = throttle.wait("cun", "10.0.0.7")
    assert 0 < wait <= 60
    now[0] += wait
    assert throttle.wait("cun", "10.0.0.7") == 0  # after the delay, one more try


def test_flooding_other_names_does_not_reset_the_throttle() -> None:
    throttle = LoginThrottle(names_kept=100)
    for _ in range(10):
        throttle.failed("cun", "10.0.0.7")
    assert throttle.wait("cun", "10.0.0.7") > 0
    for i in range(1000):
        throttle.failed(f"flood-{i}", "10.0.0.7")
    assert throttle.wait("cun", "10.0.0.7") > 0


def test_the_throttle_keeps_bounded_memory() -> None:
    throttle = LoginThrottle(names_kept=100)
    for i in range(5000):  # 5000 names of 100,000 characters, from 5000 addresses
        throttle.failed("x" * 100_000 + str(i), f"10.{i // 256 % 256}.{i % 256}.1")
    assert throttle.size() <= 3 * 100
    assert throttle.longest_name() <= 64


def test_unknown_names_cost_a_password_hash(cases: Cases, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    calls: list[str] = []
    real = cases_store.verify_password

    def counting(stored: str, password: str) -> bool:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(cases_store, "verify_password", counting)
    assert cases.authenticate("cun", "wrong-password-1") is None
    assert cases.authenticate("nobody-at-all", "wrong-password-1") is None
    assert len(calls) == 2 and calls[1].startswith("$argon2id$")  # the same hash function, for a dummy hash


# --- passwords, names and what a failed log-in leaves -----------------------------------------------------
@pytest.mark.parametrize("password", [" " * 12, "a" * 12, "1234567890", "0000000000000", "\t" * 10 + "  "])
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_password(password)
    assert password.strip() == "" or password not in str(info.value)


def test_reasonable_passwords_pass() -> None:
    assert check_password("correct horse battery") == "correct horse battery"


@pytest.mark.parametrize("name", ["casefeed", "povwatch-cli", "cadre-visit", "system", "System:cun", "anonymous"])
def test_users_cannot_be_named_like_the_systems_actors(name: str) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        check_name(name)


def test_a_failed_log_in_keeps_64_characters_of_the_name_and_never_the_password(cases: Cases,  # noqa: F811
                                                                               store: CaseStore) -> None:  # noqa: F811
    client = desk(cases)
    secret_typed = "my-Secret-Passw0rd-typed-in-the-name-field"
    assert guess(client, "n" * 10_000, secret_typed) == 401
    assert guess(client, secret_typed, secret_typed) == 401
    assert guess(client, "cun", secret_typed) == 401
    with Session(store.engine) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action.like("LOGIN%"))))
    assert rows and all(len(r.user_name) <= 64 for r in rows)
    assert all(secret_typed not in f"{r.user_name} {r.detail}" for r in rows)


def test_audit_rows_for_unknown_names_are_bounded_per_minute(store: CaseStore,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cases_store, "ANONYMOUS_FAILURES_PER_MINUTE", 5)  # the bound, small: each try hashes
    now = [dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)]
    timed = Cases(store, clock=lambda: now[0])

    def anonymous_rows() -> int:
        with Session(store.engine) as session:
            return int(session.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "LOGIN_FAILED", AuditEntry.user_name == cases_store.ANONYMOUS)) or 0)

    for i in range(8):
        assert timed.authenticate(f"nobody-{i}", "wrong-password-1") is None
    assert anonymous_rows() == 5
    now[0] += dt.timedelta(seconds=61)  # a new minute: the next failures are recorded again
    timed.authenticate("nobody-else", "wrong-password-1")
    assert anonymous_rows() == 6


# --- backdating and ids --------------------------------------------------------------------------------------
def test_a_step_cannot_be_dated_before_the_case_was_opened(cases: Cases, store: CaseStore, world: World) -> None:  # noqa: F811
    with Session(store.engine) as session, session.begin():
        session.execute(update(Case).where(Case.id == world.case1).values(
            opened_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    client = desk(cases)
    token = login(client, "cun")
    long_ago = (TODAY - dt.timedelta(days=30)).isoformat()
    answer = client.post(f"/cases/{world.case1}/steps/APPLY", data={"csrf": token, "authorised": "1",
                                                                    "on": long_ago})
    assert answer.status_code == 409 and "opened" in problem(answer.text)
    assert steps_of(cases, "zhou", world.case1) == []
    with pytest.raises(Exception, match="before the case was opened"):
        cases.advance("cun", world.case1, "APPLY", on=TODAY - dt.timedelta(days=30), authorised=True)


def test_ids_beyond_the_databases_range_are_404(cases: Cases, world: World) -> None:  # noqa: F811
    client = desk(cases)
    token = login(client, "zhou")
    huge = 2 ** 63 + 5
    for path in (f"/cases/{huge}", f"/cases/{2 ** 31}", f"/cases/-{huge}"):
        assert client.get(path).status_code == 404, path
    for path in (f"/cases/{huge}/resolve", f"/cases/{world.case1}/alerts/{huge}/acknowledge",
                 f"/cases/{huge}/steps/APPLY"):
        answer = client.post(path, data={"csrf": token, "note": "x"})
        assert answer.status_code == 404, (path, answer.status_code)
