"""The services' log (the case feed, the relay, the comparison connector): one line per record, always. A
library that logs an exception with its traceback (the SQLAlchemy pool does when a connection dies under it during
a database restart) gets one line too: `... (OperationalError: server closed the connection unexpectedly)`."""
from __future__ import annotations

import logging

__all__ = ["OneLineFormatter", "configure"]

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class OneLineFormatter(logging.Formatter):
    """A formatter that never writes a traceback or a stack, nor a line break inside a record."""

    def formatException(self, ei: object) -> str:  # noqa: N802 - logging's name
        exc = ei[1] if isinstance(ei, tuple) and len(ei) == 3 else None
        if not isinstance(exc, BaseException):
            return ""
        detail = str(exc).strip().splitlines()
        return f"({type(exc).__name__}: {detail[0]})" if detail else f"({type(exc).__name__})"

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # formatted afresh by this formatter, never a cached multi-line one
        text = super().format(record)
        return " ".join(part.strip() for part in text.splitlines() if part.strip())


def configure(level: int = logging.INFO) -> None:
    """Log to stderr at `level`, one line per record."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
