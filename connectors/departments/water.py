"""水利局 Water Resources: safe drinking water problems (quantity, quality, convenience, supply rate) of a village, or
of one household when its head is named, and when they were solved."""
from __future__ import annotations

from connectors.checks import not_before
from connectors.fields import Date, IdNumber, MultiChoice, RegionCode, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["DRINKING_WATER"]

DRINKING_WATER = FeedSpec(
    wire=catalog.event_feed("water", "drinking-water"),
    columns=(
        Column("village_code", "行政区划代码", RegionCode(12)),
        # empty: the problem concerns the whole village
        Column("head_id_number", "户主身份证号码", IdNumber(), required=False, sensitive="id"),
        Column("indicators", "问题指标", MultiChoice({"水量": "QUANTITY", "水质": "QUALITY",
                                                     "用水方便程度": "CONVENIENCE", "供水保证率": "SUPPLY_RATE"})),
        Column("found_date", "发现日期", Date()),
        Column("description", "问题描述", Text(max_length=2000)),
        Column("resolved_date", "解决日期", Date(), required=False),
    ),
    occurred_at="found_date",
    checks=(not_before("resolved_date", "found_date", later_label="解决日期", earlier_label="发现日期"),),
    example={"village_code": "652701100201", "head_id_number": "652701199202140350", "indicators": "水质、供水保证率",
             "found_date": "2024-05-06", "description": "入户管网老化, 夏季停水频繁, 水样浊度超标",
             "resolved_date": "2024-06-01"},
)
