"""自然资源局 Natural Resources: real estate registered in a person's name (commercial housing bought in town)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.fields import Amount, Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["COMMERCIAL_HOUSING"]


def _floor_area_positive(values: Mapping[str, Any]) -> str | None:
    """建筑面积 is more than 0."""
    if values["floor_area"] <= 0:
        return "floor_area: 建筑面积 must be more than 0 square metres"
    return None


COMMERCIAL_HOUSING = FeedSpec(
    wire=catalog.event_feed("natural-resources", "commercial-housing"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("property_type", "房屋类型", Choice({"商品住房": "NEW_HOUSING", "二手住房": "SECOND_HAND_HOUSING",
                                                  "商铺": "SHOP", "其他": "OTHER"})),
        Column("floor_area", "建筑面积(平方米)", Amount()),  # square metres, two decimals, never negative
        Column("registration_date", "登记日期", Date()),
        Column("location", "房屋坐落", Text()),
    ),
    occurred_at="registration_date",
    checks=(_floor_area_positive,),
    example={"name": "李秀兰", "id_number": "652701197006050236", "property_type": "商品住房", "floor_area": "96.5",
             "registration_date": "2024-04-18", "location": "博乐市青得里大街88号3栋2单元501室"},
)
