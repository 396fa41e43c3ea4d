"""卫健委 Health Commission: the four key chronic diseases under management, and serious-illness special treatment."""
from __future__ import annotations

from connectors.fields import Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["CHRONIC_DISEASE", "SERIOUS_ILLNESS"]

CHRONIC_DISEASE = FeedSpec(
    wire=catalog.event_feed("health", "chronic-disease"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("disease", "病种", Choice({"高血压": "HYPERTENSION", "糖尿病": "DIABETES", "结核病": "TUBERCULOSIS",
                                         "严重精神障碍": "SEVERE_MENTAL_DISORDER"})),
        Column("diagnosis_date", "确诊日期", Date()),
        Column("contract_service", "签约服务", Choice({"已签约": "SIGNED", "未签约": "NOT_SIGNED"})),
        Column("management_status", "管理状态", Choice({"在管": "MANAGED", "失访": "LOST_TO_FOLLOW_UP",
                                                     "死亡": "DECEASED", "治愈": "CURED"})),
    ),
    occurred_at="diagnosis_date",
    example={"name": "王秀英", "id_number": "652701196503120026", "disease": "糖尿病", "diagnosis_date": "2024-02-18",
             "contract_service": "已签约", "management_status": "在管"},
)

SERIOUS_ILLNESS = FeedSpec(
    wire=catalog.event_feed("health", "serious-illness"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("disease", "病种", Text()),
        Column("hospital", "救治医院", Text()),
        Column("treatment_start_date", "救治开始日期", Date()),
        Column("treatment_status", "救治状态", Choice({"救治中": "IN_TREATMENT", "已救治": "TREATED",
                                                     "放弃救治": "ABANDONED"})),
    ),
    occurred_at="treatment_start_date",
    example={"name": "马建国", "id_number": "652701197108230414", "disease": "急性白血病",
             "hospital": "博尔塔拉蒙古自治州人民医院", "treatment_start_date": "2024-04-09",
             "treatment_status": "救治中"},
)
