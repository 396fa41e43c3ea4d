"""市场监管局 Market Regulation: cooperatives and businesses with their members, one row per member.

统一社会信用代码 is verified by its GB 32100-2015 check character (connectors.creditcode). Codes issued by the
market regulator (first character 9) say the entity type in their second character — 1 enterprise, 2 individual
business, 3 farmers' cooperative — and 主体类型 must agree with it (其他 is not compared).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.creditcode import CreditCode
from connectors.fields import Amount, Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["BUSINESS_REGISTRATION"]

ENTITY_TYPES = {"农民专业合作社": "FARMERS_COOPERATIVE", "个体工商户": "INDIVIDUAL_BUSINESS",
                "有限责任公司": "LIMITED_COMPANY", "其他": "OTHER"}
_CODE_PREFIX = {"LIMITED_COMPANY": "91", "INDIVIDUAL_BUSINESS": "92", "FARMERS_COOPERATIVE": "93"}
_LABEL = {symbol: label for label, symbol in ENTITY_TYPES.items()}


def _entity_type_agrees_with_code(values: Mapping[str, Any]) -> str | None:
    """主体类型 agrees with the entity type that a 统一社会信用代码 issued by market regulation (first character 9)
    gives in its second character: 91 有限责任公司, 92 个体工商户, 93 农民专业合作社 (其他 is not compared)."""
    code: str = values["credit_code"]
    prefix = _CODE_PREFIX.get(values["entity_type"])
    if prefix is not None and code.startswith("9") and code[:2] != prefix:
        return (f"entity_type: 主体类型 {_LABEL[values['entity_type']]} but the 统一社会信用代码 starts with "
                f"{code[:2]} (expected {prefix})")
    return None


BUSINESS_REGISTRATION = FeedSpec(
    wire=catalog.event_feed("market-regulation", "business-registration"),
    columns=(
        Column("entity_name", "主体名称", Text()),
        Column("credit_code", "统一社会信用代码", CreditCode()),
        Column("entity_type", "主体类型", Choice(ENTITY_TYPES)),
        Column("registration_date", "注册日期", Date()),
        Column("capital_contribution", "出资额", Amount()),
        Column("member_name", "成员姓名", Text(), sensitive="name"),
        Column("member_id_number", "成员身份证号码", IdNumber(), sensitive="id"),
        Column("member_role", "成员角色", Choice({"法定代表人": "LEGAL_REPRESENTATIVE", "出资人": "INVESTOR",
                                                "成员": "MEMBER"})),
    ),
    occurred_at="registration_date",
    checks=(_entity_type_agrees_with_code,),
    example={"entity_name": "博乐市红星农机专业合作社", "credit_code": "93652701MA78L1QH3X",
             "entity_type": "农民专业合作社", "registration_date": "2024-03-20", "capital_contribution": "100,000",
             "member_name": "张志强", "member_id_number": "652722197509090311", "member_role": "法定代表人"},
)
