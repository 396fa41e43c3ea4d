"""Dates that may lie ahead: a loan's maturity (贷款到期日期) is agreed at issue and is usually in the future.

The feeds' common rule, "a date in the future is invalid", is about facts that happened (`connectors.fields.Date`);
a due date is a term of a contract, so `DueDate` takes the same spellings (`2024-03-05`, `2024/3/5`, `20240305`,
`2024年3月5日`) and the same floor (1900), and accepts dates up to the end of the year `horizon_years` ahead.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from connectors.fields import FieldError, parse_date

__all__ = ["DueDate"]


@dataclass(frozen=True)
class DueDate:
    """A contractual due date: not before 1900, not after 31 December of the year `horizon_years` ahead."""

    horizon_years: int = 50

    def parse(self, text: str, today: dt.date) -> dt.date:
        limit = dt.date(today.year + self.horizon_years, 12, 31)
        try:
            return parse_date(text, limit)
        except FieldError as exc:
            if str(exc).startswith("date in the future"):
                raise FieldError(f"more than {self.horizon_years} years ahead: {str(exc).split(': ', 1)[1]}") from None
            raise
