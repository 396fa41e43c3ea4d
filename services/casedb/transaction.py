"""The one transaction of the case DB, its one retry policy, and the one place where driver errors become the
project's errors.

    transaction(engine, work, action)   run `work(session)` in ONE transaction; a transaction that lost a race (a
                                        unique key a concurrent writer took first, a deadlock, a serialization
                                        failure, a compare-and-set that found the row changed: `Conflict`) is run
                                        again at once, up to RETRIES attempts (each loss means another writer made
                                        progress); any other database error is translated (`classify`):
      * a bad URL, credentials the server refuses, a missing database: `ConfigError`;
      * the server unreachable or going away (connection refused, restart, SQLite locked): `DatabaseUnavailable`,
        transient - retry later (the caller's backoff), nothing was stored;
      * a record the database refuses (value too long, a constraint, any SQL data error): `RecordRefused` -
        retrying will not help;
      * anything else (a missing table, a bug): `EnvironmentProblem`.
Nothing is committed when `transaction` raises. Every module that reads or writes the case DB goes through it
(CaseStore.run hands it to callers that hold a store).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from schemas.errors import ConfigError, DatabaseUnavailable, EnvironmentProblem
from services.casedb.errors import Conflict, RecordRefused

__all__ = ["transaction", "classify", "translated", "first_line", "RETRIES"]

RETRIES = 10  # attempts of a transaction that lost a race (each loss means another writer made progress)
_RACE_STATES = {"40001", "40P01"}  # PostgreSQL serialization failure, deadlock detected
# SQLSTATE classes of a server that is unreachable or going away: connection exception, insufficient resources
# (too many connections), operator intervention (admin/crash shutdown, starting up)
_UNAVAILABLE_CLASSES = {"08", "53", "57"}
_CONFIG_CLASSES = {"28", "3D"}  # invalid authorization (password), invalid catalog name (no such database)
# what a PostgreSQL server that is restarting says to a new connection (libpq gives no SQLSTATE there)
_TRANSIENT_FATAL = ("starting up", "shutting down", "recovery mode", "not yet accepting connections",
                    "too many clients", "terminating connection", "remaining connection slots")
# SQLite's transient conditions (Python's sqlite3 names them): another writer holds the lock, I/O trouble, disk full
# (a file that cannot be opened at all - SQLITE_CANTOPEN - is a configuration problem, not an outage)
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_PROTOCOL")
_T = TypeVar("_T")


def transaction(engine: Engine, work: Callable[[Session], _T], action: str) -> _T:
    """Run `work` in one transaction; retry it at once when a concurrent writer won a race (unique key, deadlock,
    a compare-and-set that found the row changed); otherwise translate the error (see `classify`); `action`
    completes "could not ...". Nothing is committed when this raises."""
    for attempt in range(1, RETRIES + 1):
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                return work(session)
        except Conflict as exc:
            if attempt < RETRIES:
                continue
            raise EnvironmentProblem(f"case database: could not {action}: {exc} ({RETRIES} attempts)") from None
        except DBAPIError as exc:  # the rollback is done; a retry re-reads what the winner committed
            kind = classify(exc)
            if kind == "race" and attempt < RETRIES:
                continue
            raise translated(kind, f"case database: could not {action}", exc) from exc
    raise AssertionError("unreachable")


def classify(exc: DBAPIError) -> str:
    """What a database error means: "race" (a concurrent writer won; retry now), "unavailable" (the server is
    unreachable or going away; retry later), "refused" (the data: retrying will not help), "config" (credentials,
    database name) or "fatal" (anything else)."""
    orig = exc.orig
    state = str(getattr(orig, "sqlstate", None) or "")
    sqlite_name = str(getattr(orig, "sqlite_errorname", ""))
    if state in _RACE_STATES:
        return "race"
    if isinstance(exc, IntegrityError):
        unique = state == "23505" or sqlite_name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
        return "race" if unique else "refused"
    if state[:2] in _CONFIG_CLASSES:
        return "config"
    if exc.connection_invalidated or state[:2] in _UNAVAILABLE_CLASSES:
        return "unavailable"
    if isinstance(exc, DataError) or state[:2] == "22":
        return "refused"
    if sqlite_name.startswith(_SQLITE_UNAVAILABLE):
        return "unavailable"
    if isinstance(exc, OperationalError) and not state and not sqlite_name:
        # libpq reports connection failures without a SQLSTATE. A server that answered FATAL refused us for good
        # (password, database name, options) unless it is merely starting, stopping or full.
        message = first_line(exc)
        if "FATAL:" in message and not any(text in message for text in _TRANSIENT_FATAL):
            return "config"
        return "unavailable"  # no answer at all: connection refused, server closed the connection
    return "fatal"


def translated(kind: str, context: str, exc: DBAPIError) -> Exception:
    detail = f"{context}: {first_line(exc)}"
    if kind == "unavailable":
        return DatabaseUnavailable(detail)
    if kind == "refused":
        return RecordRefused(f"the case database refuses the data: {first_line(exc)}")
    if kind == "config":
        return ConfigError(f"POVWATCH_CASE_DB: {detail}")
    return EnvironmentProblem(detail)


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
