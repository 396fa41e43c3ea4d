"""住建局 Housing & Urban-Rural Development: housing safety of a household (damage, safety assessments, renovation
completed)."""
from __future__ import annotations

from connectors.fields import Choice, Date, IdNumber, RegionCode, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["HOUSE_SAFETY"]

HOUSE_SAFETY = FeedSpec(
    wire=catalog.event_feed("housing", "house-safety"),
    columns=(
        Column("head_name", "户主姓名", Text(), sensitive="name"),
        Column("head_id_number", "户主身份证号码", IdNumber(), sensitive="id"),
        Column("village_code", "行政区划代码", RegionCode(12)),
        Column("cause", "事由", Choice({"自然灾害": "NATURAL_DISASTER", "鉴定": "ASSESSMENT",
                                      "改造竣工": "RENOVATION_COMPLETED", "其他": "OTHER"})),
        Column("safety_grade", "鉴定等级", Choice({"A": "A", "B": "B", "C": "C", "D": "D"})),
        # the same labels and symbols as the disaster-loss feed's 房屋损毁
        Column("damage", "损毁程度", Choice({"无": "NONE", "一般损坏": "MINOR", "严重损坏": "SERIOUS",
                                            "倒塌": "COLLAPSED"})),
        Column("event_date", "日期", Date()),
    ),
    occurred_at="event_date",
    example={"head_name": "张三", "head_id_number": "652701198001011232", "village_code": "652701100201",
             "cause": "自然灾害", "safety_grade": "C", "damage": "严重损坏", "event_date": "2024-06-22"},
)
