"""The povwatch exception tree, in one place (the lowest package owns it, so every layer can raise it).

    PovwatchError                  base of every error the program reports itself (one line, no traceback)
    ├── ConfigError                settings that cannot be used (bad env value, dev key outside development)
    ├── EnvironmentProblem         the machine lacks something (Java, Maven) or a process could not start
    │   └── DatabaseUnavailable    the case database cannot be reached now (refused, restarting): retry later
    ├── BrokerUnavailable          the Kafka broker cannot be reached
    ├── InputFileError             a department file cannot be processed at all (missing, unreadable, columns)
    ├── UnknownFeed                DEPT/FEED is not declared
    └── SchemaError                a message or record does not fit its Avro schema
        └── DecodeError            bytes that are not a povwatch single-object message

The errors of case work (NotFound, StepRefused, NotInRegion, RecordRefused) are the case DB's own:
services/casedb/errors.py, subclasses of these.

Row-level problems are not exceptions: they are `Rejection` values (see connectors.framework).
Third-party errors (aiokafka, fastavro, SQLAlchemy) are translated at the adapter that meets them.
"""
from __future__ import annotations

__all__ = [
    "PovwatchError",
    "ConfigError",
    "EnvironmentProblem",
    "DatabaseUnavailable",
    "BrokerUnavailable",
    "InputFileError",
    "UnknownFeed",
    "SchemaError",
    "DecodeError",
]


class PovwatchError(Exception):
    """An error the command line reports as one clear line."""


class ConfigError(PovwatchError):
    pass


class EnvironmentProblem(PovwatchError):
    pass


class DatabaseUnavailable(EnvironmentProblem):
    pass


class BrokerUnavailable(PovwatchError):
    pass


class InputFileError(PovwatchError):
    pass


class UnknownFeed(PovwatchError):
    pass


class SchemaError(PovwatchError):
    pass


class DecodeError(SchemaError):
    pass

