"""Cross-field checks that several feeds share (docs/feeds.md lists every feed's checks), as check factories.

Each returns a `Check`: a function of the row's parsed values giving a reason or None. Optional columns that are
empty (None) are not checked. Reasons name the field first, as every other reason does. Every check, here and
in the department modules, says what it checks in its docstring (first line): docs/feeds.md shows it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["Check", "not_before", "at_least", "product_agrees"]

Check = Callable[[Mapping[str, Any]], "str | None"]


def not_before(later: str, earlier: str, *, later_label: str, earlier_label: str) -> Check:
    """`later` (e.g. an end date) is not before `earlier` (the start)."""

    def check(values: Mapping[str, Any]) -> str | None:
        end, start = values.get(later), values.get(earlier)
        if end is not None and start is not None and end < start:
            return f"{later}: {later_label} before {earlier_label}"
        return None

    check.__doc__ = f"{later_label} is not before {earlier_label}."
    return check


def at_least(larger: str, smaller: str, *, larger_label: str, smaller_label: str) -> Check:
    """`larger` >= `smaller` (e.g. 受灾面积 >= 绝收面积)."""

    def check(values: Mapping[str, Any]) -> str | None:
        big, small = values.get(larger), values.get(smaller)
        if big is not None and small is not None and big < small:
            return f"{smaller}: {smaller_label} larger than {larger_label}"
        return None

    check.__doc__ = f"{larger_label} ≥ {smaller_label}."
    return check


def product_agrees(per_capita: str, size: str, total: str, *, tolerance: Decimal = Decimal(1),
                   labels: tuple[str, str, str] | None = None) -> Check:
    """`per_capita` x `size` agrees with `total` within `tolerance` CNY (人均纯收入 x 家庭人口数 = 家庭纯收入);
    `labels`: the three columns' Chinese headers, for the check's description."""

    def check(values: Mapping[str, Any]) -> str | None:
        each, count, whole = values.get(per_capita), values.get(size), values.get(total)
        if each is None or count is None or whole is None:
            return None
        if abs(each * count - whole) > tolerance:
            return (f"{per_capita}: {each} x {count} persons = {each * count}, but {total} is {whole} "
                    f"(must agree within {tolerance} CNY)")
        return None

    each_label, size_label, total_label = labels or (per_capita, size, total)
    check.__doc__ = f"{each_label} × {size_label} agrees with {total_label} within {tolerance} CNY."
    return check
