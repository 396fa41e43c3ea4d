"""农机中心 Farm Mechanisation Centre: farm machinery bought, with its price and the purchase subsidy."""
from __future__ import annotations

from connectors.checks import at_least
from connectors.fields import Amount, Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["MACHINERY_PURCHASE"]

MACHINERY_PURCHASE = FeedSpec(
    wire=catalog.event_feed("farm-machinery", "machinery-purchase"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("machine_type", "机具类型", Choice({"拖拉机": "TRACTOR", "收获机": "HARVESTER", "播种机": "SEEDER",
                                                 "植保机械": "PLANT_PROTECTION", "其他": "OTHER"})),
        Column("model", "机具型号", Text()),
        Column("purchase_date", "购买日期", Date()),
        Column("purchase_price", "购买金额", Amount()),
        Column("subsidy", "补贴金额", Amount()),
    ),
    occurred_at="purchase_date",
    # the subsidy is a share of the price
    checks=(at_least("purchase_price", "subsidy", larger_label="购买金额", smaller_label="补贴金额"),),
    example={"name": "马建国", "id_number": "652701197108230414", "machine_type": "拖拉机", "model": "东方红LX904",
             "purchase_date": "2024-03-28", "purchase_price": "168,000", "subsidy": "32,400"},
)
