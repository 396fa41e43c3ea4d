"""医保局 Medical Security: hospitalisations with out-of-pocket cost; enrolment in the three medical insurances
(基本医疗保险, 大病保险, 医疗救助) with the contributions paid and subsidised."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.fields import Amount, Choice, Count, Date, IdNumber, Sex, Text, Year
from connectors.framework import Column, FeedSpec
from connectors.idcard import sex_from_id
from schemas import catalog

__all__ = ["HOSPITALIZATION", "INSURANCE"]


def _settled_after_admission(values: Mapping[str, Any]) -> str | None:
    """结算日期 is not before 入院日期."""
    if values["settlement_date"] < values["admission_date"]:
        return "settlement_date: settled before the admission date"
    return None


def _out_of_pocket_within_total(values: Mapping[str, Any]) -> str | None:
    """个人自付金额 is not more than 医疗总费用."""
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


def _sex_matches_id(values: Mapping[str, Any]) -> str | None:
    """性别 agrees with the sex encoded in the 身份证号码."""
    if sex_from_id(values["id_number"]) != values["sex"]:
        return "sex: does not match the sex encoded in the ID number"
    return None


INSURANCE = FeedSpec(
    wire=catalog.event_feed("medical-security", "insurance"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("sex", "性别", Sex()),
        Column("insurance_type", "险种", Choice({"基本医疗保险": "BASIC_MEDICAL", "大病保险": "SERIOUS_ILLNESS",
                                               "医疗救助": "MEDICAL_AID"})),
        Column("enrolment_status", "参保状态", Choice({"参保": "ENROLLED", "未参保": "NOT_ENROLLED",
                                                    "停保": "SUSPENDED"})),
        Column("year", "年度", Year()),
        Column("personal_contribution", "个人缴费", Amount()),
        Column("subsidised_contribution", "资助缴费", Amount(), required=False),
    ),
    occurred_at="year",  # dated on 1 January of its 年度 (connectors.framework.occurred_on)
    checks=(_sex_matches_id,),
    example={"name": "李桂兰", "id_number": "652701198806150520", "sex": "女", "insurance_type": "基本医疗保险",
             "enrolment_status": "参保", "year": "2024", "personal_contribution": "380",
             "subsidised_contribution": "200"},
)
