"""教育局 Education: students leaving school (dropouts)."""
from __future__ import annotations

from connectors.fields import Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["DROPOUT"]

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
