"""Opening the case DB: `open_database(url)` connects (SQLite or PostgreSQL), brings the schema to the newest
revision (services/casedb/schema.py) and returns the process's CaseStore. A URL it cannot use is a ConfigError, a
server it cannot reach DatabaseUnavailable (services/casedb/transaction.py classifies); one line each.
The URL and the engine: services/casedb/engine.py."""
from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from schemas.errors import ConfigError, DatabaseUnavailable, EnvironmentProblem
from services.casedb.engine import make_engine, resolve_url
from services.casedb.store import CaseStore
from services.casedb.transaction import classify, first_line

__all__ = ["open_database"]

def open_database(url: str) -> CaseStore:
    """Connect to the case database at `url` and bring its schema to the newest revision (services/casedb/
    schema.py: a new database is created, one of issue #2 is upgraded keeping its cases and evidence)."""
    alembic_log = logging.getLogger("alembic")  # INFO lines on import and on every open: noise in our logs
    if alembic_log.level == logging.NOTSET:
        alembic_log.setLevel(logging.WARNING)
    from alembic.util import CommandError

    from services.casedb import schema

    parsed = resolve_url(url)
    engine = make_engine(parsed)
    try:
        schema.upgrade(engine)
    except ConfigError:
        engine.dispose()
        raise
    except CommandError as exc:  # Alembic: e.g. a revision it cannot find
        engine.dispose()
        raise ConfigError(f"POVWATCH_CASE_DB: {parsed.render_as_string(hide_password=True)}: schema migration: "
                          f"{first_line(exc)}") from None
    except DBAPIError as exc:
        engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        kind = classify(exc)
        if engine.dialect.name == "sqlite" and kind != "unavailable":
            raise ConfigError(f"POVWATCH_CASE_DB: cannot use SQLite database {parsed.database}: "
                              f"{first_line(exc)}") from None
        if kind == "config":
            raise ConfigError(f"POVWATCH_CASE_DB: {shown}: {first_line(exc)}") from None
        if kind == "unavailable":
            raise DatabaseUnavailable(f"case database unreachable at {shown}: {first_line(exc)}") from None
        raise EnvironmentProblem(f"case database at {shown}: {first_line(exc)}") from None
    return CaseStore(engine)
