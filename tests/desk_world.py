"""A small case DB for the web desk's tests, prepared through the case operations themselves (services.cases.store):
the bureau's roster imported (names and all), case workers of every level added with passwords, and alerts
recorded through the CaseStore as the casefeed records them.

    household H1  village 652701100201 (博乐市, township 652701100): two members, a hospital stay (MEDIUM)
    household H2  village 652722100201 (精河县): one member, a death in the household (HIGH) - another county

Users (password PASSWORD): cun (village 652701100201), xiang (township 652701100), xian (county 652701),
jinghe (county 652722), zhou (bureau 6527).

Their stored hashes are argon2id at the smallest parameters (`quick_hashes`): every log-in of a test verifies its
password, and argon2id at the product's parameters takes a tenth of a second (most of a second on a loaded machine)
by design. The verification is the product's own: it reads the parameters from the hash.
"""
from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import update
from sqlalchemy.orm import Session

from connectors.idcard import check_character
from services.casedb.models import User
from services.casedb.store import CaseStore
from services.cases.store import Cases

PASSWORD = "desk-test-password-01"
PSEUDONYM_KEY = b"desk-test-pseudonym-key-0123456789"
H1, H2 = "H-652701-0001", "H-652722-0001"
VILLAGE1, VILLAGE2 = "652701100201", "652722100201"
HEAD1_NAME, SPOUSE1_NAME, HEAD2_NAME = "阿不都热合曼·买买提", "古丽娜尔·艾力", "巴图孟和"
REASON1 = "住院个人自付14500元(入院2025-03-05, 脑梗死, 12天, 户主)"
REASON2 = "家庭成员死亡(户主, 44岁, 2025-06-02)"
USERS = {"cun": ("village", VILLAGE1), "xiang": ("township", VILLAGE1[:9]), "xian": ("county", VILLAGE1[:6]),
         "jinghe": ("county", VILLAGE2[:6]), "zhou": ("bureau", "6527")}


def quick_hashes(store: CaseStore, password: str = PASSWORD) -> None:
    """Every user's password hash: `password` as argon2id at the smallest parameters (verified in microseconds)."""
    quick = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)
    with Session(store.engine) as session, session.begin():
        session.execute(update(User).values(password_hash=quick))


def _id(county: str, born: str, seq: int, male: bool) -> str:
    first17 = f"{county}{born}{seq * 2 + (1 if male else 0):03d}"
    return first17 + check_character(first17)


def write_roster(path: Path) -> Path:
    header = ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态", "劳动能力",
              "上年人均纯收入", "家庭人口数"]
    rows = [
        [H1, HEAD1_NAME, _id("652701", "19700304", 11, True), "男", "户主", VILLAGE1, "边缘易致贫户", "未纳入",
         "有劳动能力", "8200", "2"],
        [H1, SPOUSE1_NAME, _id("652701", "19730719", 12, False), "女", "配偶", VILLAGE1, "边缘易致贫户", "未纳入",
         "有劳动能力", "8200", "2"],
        [H2, HEAD2_NAME, _id("652722", "19800101", 13, True), "男", "户主", VILLAGE2, "脱贫户", "未纳入",
         "弱劳动能力", "7600", "1"],
    ]
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _alert(alert_id: str, household: str, village: str, rule: str, severity: str, reason: str,
           occurred: dt.date) -> dict[str, object]:
    return {"alert_id": alert_id, "household_id": household, "village_code": village, "rule": rule,
            "severity": severity, "reason": reason, "event_ids": [f"ev-{alert_id}"], "occurred_at": occurred,
            "raised_at": dt.datetime.combine(occurred, dt.time(9, 0), tzinfo=dt.UTC)}


@dataclass(frozen=True)
class World:
    case1: int  # H1's case (village 652701100201)
    case2: int  # H2's case (another county)


def prepare(store: CaseStore, workdir: Path) -> World:
    """Roster, users and two cases in `store` (empty tables)."""
    cases = Cases(store, pseudonym_key=lambda: PSEUDONYM_KEY)
    counts = cases.import_roster(write_roster(workdir / "roster.csv"))
    assert (counts.households_added, counts.members_added, counts.rejected) == (2, 3, 0), counts
    for name, (role, region) in USERS.items():
        cases.add_user(name, role, region, PASSWORD)
    quick_hashes(store)
    first = store.record_household_alert(_alert("a-h1-medical", H1, VILLAGE1, "MEDICAL_EXPENSE", "MEDIUM", REASON1,
                                                 dt.date(2025, 3, 5)))
    second = store.record_household_alert(_alert("a-h2-death", H2, VILLAGE2, "DEATH_IN_HOUSEHOLD", "HIGH", REASON2,
                                                 dt.date(2025, 6, 2)))
    return World(case1=first.case_id, case2=second.case_id)


def request_comparisons(store: CaseStore, case_id: int, *, by: str = "xian") -> tuple[str, str]:
    """Two comparison requests for the case's household, as `povwatch compare request DEPT --case` stores them:
    the central bank's, answered "nothing found" for every member, and public security's, not answered yet.
    Returns (answered request id, open request id)."""
    from schemas.catalog import comparison_department
    from schemas.codec import default_codec
    from services.compare.casedb import create_request, store_answers
    from services.compare.records import result_record

    now = dt.datetime.now(dt.UTC)
    codec = default_codec()
    answered = create_request(store, "pboc", case_id=case_id, all_monitored=False, by=by, now=now, codec=codec)
    still_open = create_request(store, "public-security", case_id=case_id, all_monitored=False, by=by, now=now,
                                codec=codec)
    members = Cases(store).case_detail("zhou", case_id).members
    entry = comparison_department("pboc")
    store_answers(store, [result_record(entry, answered.request_id, m.person_key, [], now) for m in members], now)
    return answered.request_id, still_open.request_id
