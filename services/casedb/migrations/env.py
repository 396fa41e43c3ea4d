"""Alembic's environment for the case DB: the project's metadata (services.casedb.models.Base, every table) and
the connection `services.casedb.schema` hands over (config.attributes["connection"],
already inside its transaction). Without one, the URL of the config's `sqlalchemy.url`, opened the way
open_database opens it. Online only: revision 0002 inspects the database it upgrades."""
from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from services.casedb.engine import make_engine, resolve_url
from services.casedb.models import Base


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
    engine = make_engine(resolve_url(url))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


run()
