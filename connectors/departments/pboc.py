"""人民银行博州中心支行 People's Bank of China, Bortala branch: deposits and loans of the monitored population.

A row is one person's position on the 比对日期 (the date the bank compared its accounts with the roster): the
balances, and the loan's type, term and interest subsidy. The due date is a term of the loan and may lie ahead
(connectors.duedates); it is not before the issue date, and a loan in the balance was issued by the 比对日期.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.checks import not_before
from connectors.duedates import DueDate
from connectors.fields import Amount, Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["DEPOSIT_LOAN"]


def _issued_by_comparison(values: Mapping[str, Any]) -> str | None:
    """贷款发放日期 is not after the 比对日期."""
    issued = values.get("loan_issue_date")
    if issued is not None and issued > values["comparison_date"]:
        return "loan_issue_date: 贷款发放日期 after the 比对日期"
    return None


DEPOSIT_LOAN = FeedSpec(
    wire=catalog.event_feed("pboc", "deposit-loan"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("deposit_balance", "存款余额", Amount()),
        Column("loan_balance", "贷款余额", Amount()),
        Column("loan_type", "贷款类型", Choice({
            "脱贫人口小额信贷": "POVERTY_MICROCREDIT", "创业担保贷款": "BUSINESS_GUARANTEE",
            "经营性贷款": "BUSINESS_OPERATING", "消费贷款": "CONSUMER", "其他": "OTHER",
        })),
        Column("loan_issue_date", "贷款发放日期", Date(), required=False),
        Column("loan_due_date", "贷款到期日期", DueDate(), required=False),
        Column("interest_subsidy", "贴息金额", Amount(), required=False),
        Column("comparison_date", "比对日期", Date()),
    ),
    occurred_at="comparison_date",
    checks=(
        not_before("loan_due_date", "loan_issue_date", later_label="贷款到期日期", earlier_label="贷款发放日期"),
        _issued_by_comparison,
    ),
    example={"name": "马建国", "id_number": "652701197108230414", "deposit_balance": "12,500.00",
             "loan_balance": "50000", "loan_type": "脱贫人口小额信贷", "loan_issue_date": "2023-04-10",
             "loan_due_date": "2026-04-09", "interest_subsidy": "1,150.00", "comparison_date": "2024-06-30"},
)
