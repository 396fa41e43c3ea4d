"""A case DB URL made an SQLAlchemy engine, the same way for open_database and for the migrations' command line:
`resolve_url(url)` (a URL it cannot parse: one ConfigError line; `postgresql://` means psycopg 3) and
`make_engine(url)` (SQLite: its directory created, foreign keys on; PostgreSQL: a connect timeout, pre-ping)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from schemas.errors import ConfigError

__all__ = ["resolve_url", "make_engine"]

_CONNECT_TIMEOUT = 10  # seconds, PostgreSQL (unless the URL sets connect_timeout)


def resolve_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"POVWATCH_CASE_DB: not a database URL: {url!r} "
                          "(expected e.g. sqlite:///var/povwatch.db or postgresql+psycopg://user@host/db)") from None
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the project's driver
    return parsed


def make_engine(parsed: URL) -> Engine:
    shown = parsed.render_as_string(hide_password=True)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        elif not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"POVWATCH_CASE_DB: cannot create the directory of {database}: "
                                  f"{exc.strerror or exc}") from None
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            # a server behind a dropped route must not hang a connection attempt for minutes: it is an outage
            kwargs["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT}
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise ConfigError(f"POVWATCH_CASE_DB: unknown database kind {parsed.drivername!r} in {shown} "
                          "(use sqlite:/// or postgresql+psycopg://)") from None
    except ImportError as exc:
        raise ConfigError(f"POVWATCH_CASE_DB: the driver for {parsed.drivername!r} is not installed "
                          f"({exc.name or exc}); install it or choose another driver in {shown}") from None
    except (ArgumentError, TypeError, ValueError) as exc:
        raise ConfigError(f"POVWATCH_CASE_DB: unusable database URL {shown}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
