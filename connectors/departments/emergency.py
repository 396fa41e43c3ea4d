"""应急管理局 Emergency Management: household losses in natural disasters (digitised from paper at entry)."""
from __future__ import annotations

from connectors.fields import Amount, Choice, Count, Date, IdNumber, RegionCode, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["DISASTER_LOSS"]

DISASTER_LOSS = FeedSpec(
    wire=catalog.DISASTER_LOSS,
    columns=(
        Column("head_name", "户主姓名", Text(), sensitive="name"),
        Column("head_id_number", "户主身份证号码", IdNumber(), sensitive="id"),
        Column("village_code", "行政区划代码", RegionCode(12)),
        Column("disaster_type", "灾害类型", Choice({
            "洪涝": "FLOOD", "干旱": "DROUGHT", "冰雹": "HAIL", "地震": "EARTHQUAKE", "地质灾害": "GEOLOGICAL",
            "火灾": "FIRE", "风灾": "WIND", "雪灾": "SNOW", "其他": "OTHER",
        })),
        Column("disaster_date", "灾害发生日期", Date()),
        Column("deaths", "死亡人数", Count(maximum=1000)),
        Column("injuries", "受伤人数", Count(maximum=1000)),
        Column("house_damage", "房屋损毁", Choice({"无": "NONE", "一般损坏": "MINOR", "严重损坏": "SERIOUS",
                                                  "倒塌": "COLLAPSED"})),
        Column("direct_loss", "直接经济损失", Amount()),
    ),
    occurred_at="disaster_date",
    example={"head_name": "张三", "head_id_number": "652701198001011232", "village_code": "652701100201",
             "disaster_type": "洪涝", "disaster_date": "2024-06-20", "deaths": "0", "injuries": "2",
             "house_damage": "严重损坏", "direct_loss": "52000"},
)
