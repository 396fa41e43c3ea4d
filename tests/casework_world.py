"""The desk's world (tests/desk_world.py) with what issue #11 adds to a case, recorded as the casefeed records it:

    H1 (village 652701100201):  a death reported by public security, then by health (the SAME alert re-emitted:
                                "公安、卫健 印证"); a cadre's report (REPORTED_RISK, a long text over several lines);
                                its hospital-stay alert opened 20 days ago and never acknowledged: 5 days overdue
    H2 (county 652722):         its death alert opened 30 days ago: 15 days overdue, and corroborated by health
    township 652701100:         REGIONAL_RETURNS (a 9-digit region code)

With the default deadline of 15 days (POVWATCH_CASE_VERIFY_DAYS).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.casedb.models import CaseAlert
from services.casedb.store import CaseStore
from tests.desk_world import H1, H2, VILLAGE1, VILLAGE2, World, prepare

PS = "events.public-security.registration-change"
HEALTH = "events.health.chronic-disease"
CADRE = "events.intake.cadre-visit"
TOWNSHIP1 = VILLAGE1[:9]
DEATH_REASON = "家庭成员死亡(配偶, 51岁, 2025-06-10): 公安户籍注销, 卫健慢病管理状态死亡"
# the monitor's REPORTED_RISK reason: channel, risk type, the masked report text - in full, whatever its length
REPORT_TEXT = ("该户配偶*** 长期患病, 今年春耕后无法务工, 家中两名子女在校; 村干部走访时发现住房漏雨,\n"
               "屋顶需要维修, 家庭收入主要依靠低保和零星打工。" + "走访记录续: 该户生活困难情况持续。" * 20
               + " [报告全文结束]")
REPORT_REASON = f"基层干部排查(2025-06-12): 风险类型因病, 走访结论: 存在风险; 内容: {REPORT_TEXT}"
OVERDUE_H1, OVERDUE_H2 = 5, 15


@dataclass(frozen=True)
class CaseworkWorld:
    base: World
    township_case: int
    h1_medical_alert: int  # the overdue alert of H1's case


def _alert(alert_id: str, household: str, village: str, rule: str, severity: str, reason: str,
           events: list[tuple[str, str]]) -> dict[str, object]:
    return {"alert_id": alert_id, "household_id": household, "village_code": village, "rule": rule,
            "severity": severity, "reason": reason, "event_ids": [e for e, _ in events],
            "event_topics": [t for _, t in events], "occurred_at": dt.date(2025, 6, 10),
            "raised_at": dt.datetime(2025, 6, 12, 9, 0, tzinfo=dt.UTC)}


def _age(store: CaseStore, case_id: int, rule: str, days: int) -> int:
    with Session(store.engine) as session, session.begin():
        alert = session.scalar(select(CaseAlert).where(CaseAlert.case_id == case_id, CaseAlert.rule == rule))
        assert alert is not None
        session.execute(update(CaseAlert).where(CaseAlert.id == alert.id)
                        .values(opened_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days)))
        return alert.id


def prepare_casework(store: CaseStore, workdir: Path) -> CaseworkWorld:
    base = prepare(store, workdir)
    death = _alert("a-h1-death-spouse", H1, VILLAGE1, "DEATH_IN_HOUSEHOLD", "HIGH", DEATH_REASON, [("ev-ps-1", PS)])
    assert not store.record_household_alert(death).duplicate
    both = {**death, "event_ids": ["ev-ps-1", "ev-health-1"], "event_topics": [PS, HEALTH]}
    assert store.record_household_alert(both).updated  # health reports the same death: the same alert
    store.record_household_alert(_alert("a-h1-report", H1, VILLAGE1, "REPORTED_RISK", "MEDIUM", REPORT_REASON,
                                         [("ev-cadre-1", CADRE)]))
    medical = _age(store, base.case1, "MEDICAL_EXPENSE", 15 + OVERDUE_H1)
    h2 = _alert("a-h2-death", H2, VILLAGE2, "DEATH_IN_HOUSEHOLD", "HIGH", "家庭成员死亡(户主, 44岁, 2025-06-02)",
                [("ev-ps-2", PS), ("ev-health-2", HEALTH)])
    assert store.record_household_alert(h2).updated  # the same alert_id as tests/desk_world.py's, now corroborated
    _age(store, base.case2, "DEATH_IN_HOUSEHOLD", 15 + OVERDUE_H2)
    returns = store.record_regional_alert({
        "alert_id": "a-returns-1", "region_code": TOWNSHIP1, "rule": "REGIONAL_RETURNS", "severity": "MEDIUM",
        "reason": "30 日内 12 人务工结束返乡", "household_ids": [H1], "event_ids": ["ev-emp-1"],
        "event_topics": ["events.hrss.employment"], "window_start": dt.date(2025, 5, 1),
        "window_end": dt.date(2025, 5, 30), "occurred_at": dt.date(2025, 5, 1),
        "raised_at": dt.datetime(2025, 6, 1, tzinfo=dt.UTC)})
    return CaseworkWorld(base=base, township_case=returns.case_id, h1_medical_alert=medical)
