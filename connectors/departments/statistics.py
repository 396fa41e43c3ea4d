"""统计局调查队 Statistics survey team: rural household income (住户收入), one row per household and year.

Linked by the head of household's ID number. 人均纯收入 x 家庭人口数 agrees with 家庭纯收入 within 1 CNY. The four
components (工资性收入, 经营净收入, 转移净收入, 财产净收入: the statistical definition of net income) are optional;
those given never add up to more than 家庭纯收入, and when all four are given they add up to it (within 1 CNY).
The event is dated on 1 January of its 年度 (the file gives no day).
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connectors.checks import product_agrees
from connectors.fields import Amount, Count, IdNumber, Text, Year
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["HOUSEHOLD_INCOME", "INCOME_COMPONENTS"]

INCOME_COMPONENTS = ("wage_income", "business_income", "transfer_income", "property_income")
_TOLERANCE = Decimal(1)


def _household_size_positive(values: Mapping[str, Any]) -> str | None:
    """家庭人口数 is at least 1."""
    return None if values["household_size"] >= 1 else "household_size: 家庭人口数 must be at least 1"


def _components_agree(values: Mapping[str, Any]) -> str | None:
    """The income components given (工资性收入, 经营净收入, 转移净收入, 财产净收入) add up to no more than 家庭纯收入,
    and all four to 家庭纯收入, within 1 CNY."""
    given = [values[f] for f in INCOME_COMPONENTS if values.get(f) is not None]
    if not given:
        return None
    total: Decimal = sum(given, Decimal(0))
    net: Decimal = values["net_income"]
    if len(given) == len(INCOME_COMPONENTS) and abs(total - net) > _TOLERANCE:
        return (f"net_income: 工资性收入 + 经营净收入 + 转移净收入 + 财产净收入 = {total}, but 家庭纯收入 is {net} "
                f"(must agree within {_TOLERANCE} CNY)")
    if total > net + _TOLERANCE:
        return f"net_income: the income components given add up to {total}, more than 家庭纯收入 {net}"
    return None


HOUSEHOLD_INCOME = FeedSpec(
    wire=catalog.event_feed("statistics", "household-income"),
    columns=(
        Column("head_name", "户主姓名", Text(), sensitive="name"),
        Column("head_id_number", "户主身份证号码", IdNumber(), sensitive="id"),
        Column("year", "年度", Year()),
        Column("household_size", "家庭人口数", Count(maximum=50)),
        Column("net_income", "家庭纯收入", Amount()),
        Column("per_capita_net_income", "人均纯收入", Amount()),
        Column("wage_income", "工资性收入", Amount(), required=False),
        Column("business_income", "经营净收入", Amount(), required=False),
        Column("transfer_income", "转移净收入", Amount(), required=False),
        Column("property_income", "财产净收入", Amount(), required=False),
    ),
    occurred_at="year",  # dated on 1 January of its 年度 (connectors.framework.occurred_on)
    checks=(
        _household_size_positive,
        product_agrees("per_capita_net_income", "household_size", "net_income",
                       labels=("人均纯收入", "家庭人口数", "家庭纯收入")),
        _components_agree,
    ),
    example={"head_name": "王建军", "head_id_number": "652701195803110212", "year": "2023", "household_size": "4",
             "net_income": "46,000.00", "per_capita_net_income": "11500", "wage_income": "28000",
             "business_income": "12000", "transfer_income": "5200", "property_income": "800"},
)
