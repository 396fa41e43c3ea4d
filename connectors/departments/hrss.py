"""人社局 Human Resources & Social Security: labour transfer and employment (务工就业), with last month's wage and the
date a worker came home."""
from __future__ import annotations

from connectors.checks import not_before
from connectors.fields import Amount, Choice, Date, IdNumber, Text
from connectors.framework import Column, FeedSpec
from schemas import catalog

__all__ = ["EMPLOYMENT"]

EMPLOYMENT = FeedSpec(
    wire=catalog.event_feed("hrss", "employment"),
    columns=(
        Column("county", "县市", Text(max_length=40)),
        Column("township", "乡镇", Text(max_length=40)),
        Column("village", "村", Text(max_length=40)),
        Column("name", "姓名", Text(), sensitive="name"),
        Column("id_number", "身份证号码", IdNumber(), sensitive="id"),
        Column("transfer_channel", "转移渠道", Choice({
            "有组织转移": "ORGANISED", "自主转移": "SELF_ORGANISED", "公益性岗位": "PUBLIC_WELFARE_POST",
            "就近就业": "LOCAL_EMPLOYMENT",
        })),
        Column("employment_scope", "转移就业方式", Choice({
            "县内": "WITHIN_COUNTY", "州内县外": "WITHIN_PREFECTURE", "区内州外": "WITHIN_REGION",
            "区外": "OUTSIDE_REGION",
        })),
        Column("start_date", "务工开始日期", Date()),
        Column("last_month_wage", "上月务工薪酬(元)", Amount()),
        Column("employer", "工作单位", Text()),
        Column("end_date", "务工结束日期", Date(), required=False),  # set when the worker came home
        Column("pension_insurance", "养老保险", Choice({"已参保": "INSURED", "未参保": "NOT_INSURED"})),
    ),
    occurred_at="start_date",
    checks=(not_before("end_date", "start_date", later_label="务工结束日期", earlier_label="务工开始日期"),),
    example={"county": "博乐市", "township": "小营盘镇", "village": "达勒特村", "name": "王建国",
             "id_number": "652701196509100712", "transfer_channel": "有组织转移", "employment_scope": "区外",
             "start_date": "2024-03-01", "last_month_wage": "4,800", "employer": "江苏某纺织有限公司",
             "end_date": "2024-06-15", "pension_insurance": "已参保"},
)
