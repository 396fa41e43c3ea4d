"""公安局 Public Security: household-registration changes, vehicle purchases, identity checks against the household
register and traffic accidents."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.fields import Amount, Choice, Date, IdNumber, Sex, Text
from connectors.framework import Column, FeedSpec
from connectors.idcard import sex_from_id
from schemas import catalog

__all__ = ["REGISTRATION_CHANGE", "VEHICLE_PURCHASE", "IDENTITY_CHECK", "TRAFFIC_ACCIDENT"]

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
    """上牌日期 is not before 购买日期."""
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


def _sex_matches_id(values: Mapping[str, Any]) -> str | None:
    """性别 agrees with the sex encoded in the 身份证号码."""
    if sex_from_id(values["id_number"]) != values["sex"]:
        return "sex: 性别 does not match the sex encoded in the ID number"
    return None


IDENTITY_CHECK = FeedSpec(
    wire=catalog.event_feed("public-security", "identity-check"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("sex", "性别", Sex()),
        Column("education_level", "文化程度", Choice({
            "文盲或半文盲": "ILLITERATE", "小学": "PRIMARY", "初中": "JUNIOR", "高中": "SENIOR",
            "中专": "SECONDARY_VOCATIONAL", "大专及以上": "COLLEGE_OR_ABOVE",
        })),
        # the feed contract lists no values here: the roster's 与户主关系 (bureau.RELATIONS), the register it is
        # checked against
        Column("relation", "与户主关系", Choice({
            "户主": "HEAD", "配偶": "SPOUSE", "子": "SON", "女": "DAUGHTER", "父亲": "FATHER", "母亲": "MOTHER",
            "孙子": "GRANDSON", "孙女": "GRANDDAUGHTER", "其他": "OTHER",
        })),
        Column("address", "家庭详细住址", Text()),
        Column("check_date", "比对日期", Date()),
    ),
    occurred_at="check_date",
    checks=(_sex_matches_id,),
    example={"name": "张三", "id_number": "652701198001011232", "sex": "男", "education_level": "初中",
             "relation": "户主", "address": "博乐市小营盘镇达勒特村3组12号", "check_date": "2024-05-20"},
)

TRAFFIC_ACCIDENT = FeedSpec(
    wire=catalog.event_feed("public-security", "traffic-accident"),
    columns=(
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("accident_date", "事故日期", Date()),
        Column("casualty", "伤亡情况", Choice({"死亡": "DEATH", "重伤": "SERIOUS_INJURY", "轻伤": "MINOR_INJURY"})),
        Column("location", "事故地点", Text(), required=False),
        Column("liability", "责任认定", Choice({
            "全部": "FULL", "主要": "MAJOR", "同等": "EQUAL", "次要": "MINOR", "无责任": "NONE",
            "未认定": "UNDETERMINED",
        })),
    ),
    occurred_at="accident_date",
    example={"name": "王建国", "id_number": "652701196509100712", "accident_date": "2024-02-14", "casualty": "重伤",
             "location": "G30连霍高速博乐段K4521", "liability": "次要"},
)
