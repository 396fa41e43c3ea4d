"""党委网信办 Cyberspace Affairs: online public-opinion clues about a village, and a person when one is named."""
from __future__ import annotations

from connectors.fields import Choice, Date, IdNumber, RegionCode, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["PUBLIC_OPINION"]

PUBLIC_OPINION = FeedSpec(
    wire=catalog.event_feed("cac", "public-opinion"),
    columns=(
        Column("clue_id", "线索编号", Text(max_length=40)),
        Column("found_date", "发现日期", Date()),
        Column("platform", "来源平台", Choice({
            "微博": "WEIBO", "微信": "WECHAT", "抖音": "DOUYIN", "新闻网站": "NEWS_SITE", "论坛": "FORUM",
            "其他": "OTHER",
        })),
        Column("village_code", "行政区划代码", RegionCode(12)),
        Column("person_id_number", "涉及人员身份证号码", IdNumber(), required=False, sensitive="id"),
        # the intake channels' risk types (docs/feeds.md, "The intake channels"), with the same symbols
        Column("risk_type", "风险类型", Choice({
            "因病": "ILLNESS", "因灾": "DISASTER", "因学": "EDUCATION", "因残": "DISABILITY", "因意外": "ACCIDENT",
            "就业": "EMPLOYMENT", "住房": "HOUSING", "饮水": "DRINKING_WATER", "其他": "OTHER",
        })),
        Column("summary", "线索摘要", Text(max_length=2000)),
    ),
    occurred_at="found_date",
    example={"clue_id": "WX-2024-0315", "found_date": "2024-03-15", "platform": "抖音", "village_code": "652701100201",
             "person_id_number": "652701198504120318", "risk_type": "因病",
             "summary": "视频称该户户主重病住院, 家中无劳动力"},
)
