"""民政局 Civil Affairs: social assistance (低保, 特困供养, the two disability subsidies, 临时救助) taken up, ended
and paid."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.checks import not_before
from connectors.fields import Amount, Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["ASSISTANCE"]


def _exit_has_its_end(values: Mapping[str, Any]) -> str | None:
    """变动类型 退出 gives its 结束日期 (退出 is an end: it says when)."""
    if values["change_type"] == "EXITED" and values["end_date"] is None:
        return "end_date: missing 结束日期 (变动类型 退出 ends the assistance on that date)"
    return None

ASSISTANCE = FeedSpec(
    wire=catalog.event_feed("civil-affairs", "assistance"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("assistance_type", "救助类型", Choice({
            "低保": "MINIMUM_LIVING_GUARANTEE", "特困供养": "EXTREME_POVERTY_SUPPORT",
            "困难残疾人生活补贴": "DISABILITY_LIVING_ALLOWANCE",
            "重度残疾人护理补贴": "SEVERE_DISABILITY_CARE_ALLOWANCE", "临时救助": "TEMPORARY_ASSISTANCE",
        })),
        Column("change_type", "变动类型", Choice({"纳入": "ENROLLED", "退出": "EXITED", "发放": "PAID"})),
        Column("amount", "金额", Amount()),
        Column("start_date", "开始日期", Date()),
        Column("end_date", "结束日期", Date(), required=False),
    ),
    occurred_at="start_date",
    checks=(not_before("end_date", "start_date", later_label="结束日期", earlier_label="开始日期"), _exit_has_its_end),
    example={"name": "马桂英", "id_number": "652722197811200550", "assistance_type": "低保", "change_type": "纳入",
             "amount": "520", "start_date": "2024-01-01", "end_date": "2024-06-30"},
)
