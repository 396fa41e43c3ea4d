"""公安局 Public Security: household-registration changes and vehicle purchases."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.fields import Amount, Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["REGISTRATION_CHANGE", "VEHICLE_PURCHASE"]

REGISTRATION_CHANGE = FeedSpec(
    wire=catalog.REGISTRATION_CHANGE,
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("change_type", "变动类型", Choice({
            "死亡": "DEATH", "迁出": "MOVE_OUT", "出生": "BIRTH", "嫁入": "MARRY_IN", "嫁出": "MARRY_OUT",
            "注销": "CANCELLED",
        })),
        Column("change_date", "变动日期", Date()),
        Column("remark", "备注", Text(), required=False),
    ),
    occurred_at="change_date",
    example={"name": "张三", "id_number": "652701198001011232", "change_type": "死亡", "change_date": "2024-03-05",
             "remark": "病故"},
)


def _registered_after_purchase(values: Mapping[str, Any]) -> str | None:
    if values["registration_date"] < values["purchase_date"]:
        return "registration_date: plate registered before the purchase date"
    return None


VEHICLE_PURCHASE = FeedSpec(
    wire=catalog.VEHICLE_PURCHASE,
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("vehicle_type", "车辆类型", Text()),
        Column("model", "品牌型号", Text()),
        Column("purchase_date", "购买日期", Date()),
        Column("registration_date", "上牌日期", Date()),
        Column("price", "购车价格", Amount(), required=False),
    ),
    occurred_at="purchase_date",
    checks=(_registered_after_purchase,),
    example={"name": "张三", "id_number": "652701198001011232", "vehicle_type": "小型轿车", "model": "比亚迪秦PLUS",
             "purchase_date": "2024-05-01", "registration_date": "2024-05-08", "price": "119,800"},
)
