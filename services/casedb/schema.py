"""The case DB's schema version: brings a database to the newest Alembic revision (services/casedb/migrations).

`upgrade(engine)` is what `open_database` runs on every open:
  * an empty database goes from nothing to head;
  * a database of issue #2 (the `cases` table present, no `alembic_version`) is stamped 0001 - the schema it
    has - and upgraded from there, keeping its cases and evidence;
  * a database whose `alembic_version` names a revision but whose tables are gone (dropped by hand, as tests
    do with `Base.metadata.drop_all`) is built again from nothing;
  * a database at a revision this code does not know (made by a newer povwatch) is refused: ConfigError.
A database at head is only read. An upgrade runs in one transaction, on PostgreSQL under an advisory lock and on
SQLite under the write lock (BEGIN IMMEDIATE), so processes opening the same new database at once upgrade it
once. On SQLite foreign keys are switched off while batch mode copies tables, and checked before the commit.
Errors are left to the caller (`open_database` translates them).

A new revision (developers): `python -m services.casedb.schema revision -m "what changes" [--autogenerate]
--url URL` writes services/casedb/migrations/versions/<rev>_<slug>.py from the template.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from schemas.errors import ConfigError

__all__ = ["upgrade", "head", "current", "FIRST_REVISION", "MIGRATIONS"]

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
FIRST_REVISION = "0001"  # the schema of issue #2
_LOCK_KEY = 0x706F7677  # "povw": the advisory lock PostgreSQL processes take while they upgrade
log = logging.getLogger(__name__)
_IN_PROCESS = threading.Lock()  # Alembic's `context` and `op` are module-global: one upgrade at a time per process


def _config(connection: Connection | None = None, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this code knows."""
    revision = _scripts().get_current_head()
    assert revision is not None, "services/casedb/migrations/versions holds no revision"
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database on `connection` is at (None: not versioned)."""
    return MigrationContext.configure(connection).get_current_revision()


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in _scripts().walk_revisions())


def _to_head(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    tables = set(inspect(connection).get_table_names())
    revision = current(connection)
    config = _config(connection)
    if revision is None and "cases" in tables:
        command.stamp(config, FIRST_REVISION)           # the DB of issue #2
    elif revision is not None and "cases" not in tables:
        command.stamp(config, "base", purge=True)       # its tables were dropped: build them again
    elif revision is not None and not _known(revision):
        raise ConfigError(f"POVWATCH_CASE_DB: the case database is at schema revision {revision}, which this "
                          f"povwatch does not know (its newest is {head()}): use a newer povwatch")
    before = current(connection)
    if before != head():
        command.upgrade(config, "head")
        log.info("case DB schema upgraded from %s to %s", before or "nothing", head())


def _at_head(connection: Connection) -> bool:
    return current(connection) == head() and "cases" in inspect(connection).get_table_names()


def upgrade(engine: Engine) -> None:
    """Bring the database of `engine` to the newest revision (see the module docstring)."""
    with engine.connect() as connection:
        at_head = _at_head(connection)  # the usual case: a read, no lock
        connection.rollback()
        if at_head:
            return
        with _IN_PROCESS:
            _upgrade(connection)


def _upgrade(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:  # outside any transaction, where SQLite honours it; batch mode copies and drops tables
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        connection.commit()  # (SQLAlchemy's autobegun transaction; SQLite itself opened none)
    try:
        with connection.begin():
            if sqlite:  # the write lock at once: a second process opening a new file waits, then finds it done
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            _to_head(connection)
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ConfigError(f"POVWATCH_CASE_DB: after the upgrade {len(broken)} row(s) break a "
                                      f"foreign key, first in table {broken[0][0]}; nothing was committed")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys = ON")
            connection.commit()


def main(argv: Sequence[str] | None = None) -> int:
    """Developers' entry point: `revision` writes a new migration file; `current` and `upgrade` act on --url."""
    parser = argparse.ArgumentParser(prog="python -m services.casedb.schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["revision", "current", "upgrade"])
    parser.add_argument("--url", help="the case DB (as POVWATCH_CASE_DB); needed by current, upgrade, --autogenerate")
    parser.add_argument("-m", "--message", help="with revision: what the revision changes")
    parser.add_argument("--autogenerate", action="store_true", help="with revision: diff the models against --url")
    args = parser.parse_args(argv)
    if args.action == "revision":
        if not args.message:
            parser.error("revision needs -m MESSAGE")
        number = f"{int(head()) + 1:04d}"
        command.revision(_config(url=args.url), message=args.message, autogenerate=args.autogenerate,
                         rev_id=number)
        return 0
    if not args.url:
        parser.error(f"{args.action} needs --url")
    from services.casedb.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(args.url))
    try:
        upgrade(engine)
        with engine.connect() as connection:
            print(current(connection))
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
