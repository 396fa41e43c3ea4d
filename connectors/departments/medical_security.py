"""医保局 Medical Security: hospitalisations with out-of-pocket cost."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.fields import Amount, Count, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["HOSPITALIZATION"]


def _settled_after_admission(values: Mapping[str, Any]) -> str | None:
    if values["settlement_date"] < values["admission_date"]:
        return "settlement_date: settled before the admission date"
    return None


def _out_of_pocket_within_total(values: Mapping[str, Any]) -> str | None:
    if values["out_of_pocket"] > values["total_cost"]:
        return "out_of_pocket: larger than the total cost"
    return None


HOSPITALIZATION = FeedSpec(
    wire=catalog.HOSPITALIZATION,
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("disease", "疾病名称", Text()),
        Column("admission_date", "入院日期", Date()),
        Column("days", "住院天数", Count(maximum=3660)),
        Column("total_cost", "医疗总费用", Amount()),
        Column("out_of_pocket", "个人自付金额", Amount()),
        Column("settlement_date", "结算日期", Date()),
    ),
    occurred_at="admission_date",
    checks=(_settled_after_admission, _out_of_pocket_within_total),
    example={"name": "张三", "id_number": "652701198001011232", "disease": "肺炎", "admission_date": "2024-04-01",
             "days": "5", "total_cost": "12,000.00", "out_of_pocket": "3600", "settlement_date": "2024-04-06"},
)
