"""Alembic's environment for the case DB: the project's metadata (services.casefeed.db.Base, with the tables of
services.cases.model) and the connection `services.casefeed.schema` hands over (config.attributes["connection"],
already inside its transaction). Without one, the URL of the config's `sqlalchemy.url`, opened the way
open_database opens it. Online only: revision 0002 inspects the database it upgrades."""
from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import services.cases.model  # noqa: F401  (the workflow tables, on the same metadata)
from services.casefeed.db import Base, _make_engine, _resolve_url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters tables by copying
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        raise SystemExit("povwatch's migrations run online only (revision 0002 inspects the database)")
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: set sqlalchemy.url (or run the migrations through open_database)")
    engine = _make_engine(_resolve_url(url))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


run()
