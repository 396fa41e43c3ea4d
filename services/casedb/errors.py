"""The errors of case work (the case DB and the operations on it); the wire's errors stay in schemas.errors.

    schemas.errors.PovwatchError
    ├── NotFound                   a case, alert, user or household named by the caller does not exist
    ├── StepRefused                a case operation refused: the workflow, the user's role or region (one line:
    │   │                          why, and which steps are allowed now)
    │   └── NotInRegion            the case lies outside the user's region (a desk shows it as not found)
    └── schemas.errors.SchemaError
        └── RecordRefused          the case database refuses a record's data (a data error, not an outage)

    Conflict                       not a PovwatchError: a concurrent writer changed a row between our read and our
                                   write; `services.casedb.transaction.transaction` retries the transaction

An unreachable case database is `schemas.errors.DatabaseUnavailable` (SQL sources raise it too), credentials or a URL
it cannot use `ConfigError`: both stay in schemas.errors, as every layer meets them.
"""
from __future__ import annotations

from schemas.errors import PovwatchError, SchemaError

__all__ = ["NotFound", "StepRefused", "NotInRegion", "RecordRefused", "Conflict"]


class NotFound(PovwatchError):
    pass


class StepRefused(PovwatchError):
    pass


class NotInRegion(StepRefused):
    pass


class RecordRefused(SchemaError):
    pass


class Conflict(Exception):
    """A concurrent writer changed a row between our read and our write: retry the transaction."""
