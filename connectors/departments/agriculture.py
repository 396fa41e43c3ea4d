"""农业农村局 Agriculture & Rural Affairs: disaster impact on farming (a village, or one household when its head is
named) and the village collective's income to distribute."""
from __future__ import annotations

from connectors.checks import at_least
from connectors.fields import Amount, Choice, Count, Date, IdNumber, RegionCode, Text, Year
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["FARM_DISASTER", "COLLECTIVE_INCOME"]

FARM_DISASTER = FeedSpec(
    wire=catalog.event_feed("agriculture", "farm-disaster"),
    columns=(
        Column("village_code", "行政区划代码", RegionCode(12)),
        Column("head_id_number", "户主身份证号码", IdNumber(), required=False, sensitive="id"),
        Column("disaster_type", "灾害类型", Choice({
            "干旱": "DROUGHT", "洪涝": "FLOOD", "冰雹": "HAIL", "低温冻害": "FROST", "风灾": "WIND",
            "病虫害": "PESTS", "动物疫病": "ANIMAL_DISEASE", "其他": "OTHER",
        })),
        Column("affected", "受灾作物或畜种", Text(max_length=100)),
        Column("affected_area", "受灾面积(亩)", Amount()),  # mu, two decimals, never negative
        Column("lost_area", "绝收面积(亩)", Amount()),
        Column("livestock_deaths", "死亡牲畜(头只)", Count(maximum=1_000_000)),
        Column("direct_loss", "直接经济损失", Amount()),
        Column("disaster_date", "灾害日期", Date()),
    ),
    occurred_at="disaster_date",
    checks=(at_least("affected_area", "lost_area", larger_label="受灾面积", smaller_label="绝收面积"),),
    example={"village_code": "652701100201", "head_id_number": "652701198001011232", "disaster_type": "冰雹",
             "affected": "棉花", "affected_area": "45", "lost_area": "12.5", "livestock_deaths": "0",
             "direct_loss": "38,000", "disaster_date": "2024-06-20"},
)


COLLECTIVE_INCOME = FeedSpec(
    wire=catalog.event_feed("agriculture", "collective-income"),
    columns=(
        Column("village_code", "行政区划代码", RegionCode(12)),
        Column("year", "年度", Year()),
        Column("operating_income", "经营收入", Amount()),
        Column("distributable_income", "可分配收益", Amount()),
        Column("beneficiaries", "分配人数", Count(maximum=1_000_000)),
        Column("previous_distributable_income", "上年可分配收益", Amount()),
    ),
    occurred_at="year",  # dated on 1 January of its 年度 (connectors.framework.occurred_on)
    example={"village_code": "652701100201", "year": "2023", "operating_income": "1,260,000",
             "distributable_income": "386,500.50", "beneficiaries": "1240", "previous_distributable_income": "352000"},
)
