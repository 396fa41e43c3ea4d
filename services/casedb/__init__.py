"""The case database, in one package: every other package that reads or writes it (casefeed, cases, compare, desk)
imports it and nothing of each other's internals.

    models.py        the tables (SQLAlchemy ORM, one metadata), the UTC datetime column type, the code widths
    migrations/      the Alembic revisions; schema.py brings a database to the newest one
    database.py      open_database(url) -> CaseStore: connect, upgrade, hand out the store
    transaction.py   the one transaction helper and its one retry policy; the one place that turns driver errors
                     (DBAPIError, OperationalError, ...) into the project's errors
    errors.py        the errors of case work (NotFound, StepRefused, NotInRegion, RecordRefused, Conflict)
    store.py         CaseStore: alerts recorded as evidence on cases; read-only views of cases
    lifecycle.py     where an alert's evidence attaches: a case alert opened, escalated, resolved
    departments.py   who reported an alert's events, in the case workers' words
"""
