"""残联 Disabled Persons' Federation: disability certificates (残疾人证) — category, grade, issue date, status."""
from __future__ import annotations

from connectors.fields import Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["DISABILITY_CERTIFICATE"]

DISABILITY_CERTIFICATE = FeedSpec(
    wire=catalog.event_feed("disabled-federation", "disability-certificate"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("disability_category", "残疾类别", Choice({
            "视力": "VISUAL", "听力": "HEARING", "言语": "SPEECH", "肢体": "PHYSICAL", "智力": "INTELLECTUAL",
            "精神": "MENTAL", "多重": "MULTIPLE",
        })),
        Column("disability_grade", "残疾等级", Choice({"一级": "GRADE_1", "二级": "GRADE_2", "三级": "GRADE_3",
                                                    "四级": "GRADE_4"})),
        Column("issue_date", "发证日期", Date()),
        Column("certificate_status", "证件状态", Choice({"有效": "VALID", "注销": "CANCELLED", "过期": "EXPIRED"})),
    ),
    occurred_at="issue_date",
    example={"name": "张志强", "id_number": "652722197509090311", "disability_category": "肢体",
             "disability_grade": "二级", "issue_date": "2024-05-14", "certificate_status": "有效"},
)
