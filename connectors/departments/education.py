"""教育局 Education: students leaving school (dropouts), the roll of students and their enrolment status, and
student aid paid."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.fields import Amount, Choice, Date, IdNumber, Sex, Text
from connectors.framework import Column, FeedSpec
from connectors.idcard import sex_from_id
from schemas import catalog

__all__ = ["DROPOUT", "STUDENT_ROLL", "STUDENT_AID"]

DROPOUT = FeedSpec(
    wire=catalog.DROPOUT,
    columns=(
        Column("student_name", "学生姓名", Text(), sensitive="name"),
        Column("student_id_number", "学生身份证号码", IdNumber(), sensitive="id"),
        Column("school", "学校名称", Text()),
        Column("stage", "学段", Choice({"小学": "PRIMARY", "初中": "JUNIOR", "高中": "SENIOR", "中职": "VOCATIONAL"})),
        Column("grade", "年级", Text(max_length=20)),
        Column("dropout_date", "辍学日期", Date()),
    ),
    occurred_at="dropout_date",
    example={"student_name": "张小明", "student_id_number": "652701201209150420", "school": "博乐市第三中学",
             "stage": "初中", "grade": "八年级", "dropout_date": "2024-03-11"},
)


def _sex_matches_student_id(values: Mapping[str, Any]) -> str | None:
    """性别 agrees with the sex encoded in the 学生身份证号码."""
    if sex_from_id(values["student_id_number"]) != values["sex"]:
        return "sex: 性别 does not match the sex encoded in the ID number"
    return None


STUDENT_ROLL = FeedSpec(
    wire=catalog.event_feed("education", "student-roll"),
    columns=(
        Column("student_name", "学生姓名", Text(), sensitive="name"),
        Column("student_id_number", "学生身份证号码", IdNumber(), sensitive="id"),
        Column("sex", "性别", Sex()),
        Column("school", "学校名称", Text()),
        # the dropout feed's symbols for the stages both have
        Column("stage", "学段", Choice({
            "学前": "PRESCHOOL", "小学": "PRIMARY", "初中": "JUNIOR", "高中": "SENIOR", "中职": "VOCATIONAL",
            "高职": "HIGHER_VOCATIONAL", "本科": "UNDERGRADUATE",
        })),
        Column("grade", "年级", Text(max_length=20)),
        Column("status", "在校状态", Choice({"在读": "ENROLLED", "休学": "SUSPENDED", "辍学": "DROPPED_OUT",
                                            "毕业": "GRADUATED", "转出": "TRANSFERRED_OUT"})),
        Column("status_date", "状态日期", Date()),
    ),
    occurred_at="status_date",
    checks=(_sex_matches_student_id,),
    example={"student_name": "张小明", "student_id_number": "652701201209150420", "sex": "女",
             "school": "博乐市第三中学", "stage": "初中", "grade": "七年级", "status": "在读",
             "status_date": "2024-03-01"},
)

STUDENT_AID = FeedSpec(
    wire=catalog.event_feed("education", "student-aid"),
    columns=(
        Column("student_name", "学生姓名", Text(), sensitive="name"),
        Column("student_id_number", "学生身份证号码", IdNumber(), sensitive="id"),
        Column("programme", "资助项目", Choice({
            "营养改善计划": "NUTRITION_IMPROVEMENT", "寄宿生生活补助": "BOARDING_ALLOWANCE",
            "国家助学金": "NATIONAL_GRANT", "雨露计划": "YULU_PLAN", "免学费": "TUITION_WAIVER", "其他": "OTHER",
        })),
        Column("amount", "资助金额", Amount()),
        Column("paid_date", "发放日期", Date()),
    ),
    occurred_at="paid_date",
    example={"student_name": "李小红", "student_id_number": "65270120100302017X", "programme": "寄宿生生活补助",
             "amount": "625", "paid_date": "2024-04-10"},
)
