"""`povwatch household show` and the risk-elimination checks (P70) of `povwatch case advance`, as an operator runs
them: real subprocesses on a SQLite case DB (tests/e2e/test_case_cli.py's world: the roster imported with names,
household HA with one HIGH alert). A refusal is one line on stderr with exit 2, as every refusal."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from services.casedb.database import open_database
from services.cases.profiles import record_profiles
from services.cases.store import Cases
from tests.cases_behaviour import HA, V1
from tests.e2e.test_case_cli import Cli, cli, world  # noqa: F401 (fixtures)

TODAY = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the CLI's today is the prefecture's (POVWATCH_TIMEZONE)
LAST_YEAR = TODAY.year - 1  # the roster's 上年人均纯收入 counts as last year's


def _labelled(cli: Cli, case_id: int) -> None:  # noqa: F811
    """HA's HIGH alert resolved and the household carried to LABEL (in process: each subprocess costs seconds)."""
    with open_database(cli.db) as store:
        cases = Cases(store)
        [alert] = cases.case_detail("county", case_id).alerts
        cases.resolve_alert("town1", alert.id, "已核实")
        for user, step, days in (("vil1", "APPLY", 12), ("vil1", "PUBLIC_NOTICE", 11), ("town1", "TOWNSHIP_VERIFY", 5),
                                 ("county", "COUNTY_CONFIRM", 4), ("county", "DATA_COMPARE", 3),
                                 ("county", "LABEL", 2)):
            cases.advance(user, case_id, step, on=TODAY - dt.timedelta(days=days), authorised=step == "APPLY")


def test_household_show_text_json_and_refusals(cli: Cli, world: int) -> None:  # noqa: F811
    with open_database(cli.db) as store:
        head = Cases(store).household_profile(None, HA, audited=False).members[0].person_key
        record_profiles(store, [(HA, {
            "household_id": HA, "village_code": V1, "income_year": LAST_YEAR, "income_per_capita": Decimal("8200"),
            "updated_at": dt.datetime(TODAY.year, 1, 2, tzinfo=dt.UTC), "facts": [
                {"domain": "健康", "topic": "events.medical-security.hospitalization", "department": "medical-security",
                 "feed": "住院", "event_id": "ev-stay", "person_key": head, "day": dt.date(LAST_YEAR, 7, 1),
                 "values": {"admission_date": f"{LAST_YEAR}-07-01", "out_of_pocket": "32000.00"}}]})])
    text = cli.run("household", "show", HA).stdout
    lines = text.splitlines()
    assert lines[0] == f"户 {HA}  村 {V1}  未纳入 · 一般农户 · 有劳动能力 · 2 人"
    assert lines[1] == f"收入: 人均纯收入 8200 元 ({LAST_YEAR} 年, 统计局住户收入), 本县标准 9000 元: 低于标准"
    assert any(line.startswith("  户主  王建国  男  ") for line in lines)
    assert f"  健康  {LAST_YEAR}-07-01  医保 · 住院  王建国 (户主)" in lines
    assert f"        入院日期 {LAST_YEAR}-07-01; 个人自付金额 32000.00" in lines
    assert f"未解除预警 (案件 {world}):" in lines and any("MEDICAL_EXPENSE 医疗支出  高  待处理" in x for x in lines)
    data = json.loads(cli.run("household", "show", HA, "--json", "--by", "vil1").stdout)
    assert (data["household_id"], data["case_id"], data["income"]["below"]) == (HA, world, True)
    assert [m["name"] for m in data["members"]] == ["王建国", "李秀兰"]
    assert data["facts"][0]["fields"][1] == {"name": "out_of_pocket", "label": "个人自付金额", "value": "32000.00"}
    assert cli.refused("household", "show", "NOPE") == (
        "no household NOPE in the case DB (neither in the roster nor profiled)")
    assert cli.refused("household", "show", HA, "--by", "vil2") == (
        f"household {HA} (village {V1}) is outside the region 652701100202 of village user vil2")
    audit = json.loads(cli.run("audit", "household", HA, "--json", "--case-db-only").stdout)
    assert [(e["user_name"], e["action"]) for e in audit] == [
        ("povwatch-cli", "VIEW_HOUSEHOLD"), ("vil1", "VIEW_HOUSEHOLD"), ("vil2", "REFUSED")]


def test_case_advance_refuses_nominate_notice_below_the_countys_line(cli: Cli, world: int,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    _labelled(cli, world)
    case = str(world)
    assert cli.refused("case", "advance", case, "NOMINATE_NOTICE", "--by", "vil1") == (
        f"case {case}: NOMINATE_NOTICE refused: the income is not stable (P70): 人均纯收入 7200 元，低于 {LAST_YEAR} "
        "年本县标准 9000 元 (花名册上年人均纯收入)")
    # the county's own line, from the rules file the CLI reads (POVWATCH_RULES_FILE, schemas/thresholds.py)
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[income_lines.counties."{V1[:6]}"]\n{LAST_YEAR} = 7500\n', encoding="utf-8")
    cli.env["POVWATCH_RULES_FILE"] = str(rules)
    assert cli.refused("case", "advance", case, "NOMINATE_NOTICE", "--by", "vil1") == (
        f"case {case}: NOMINATE_NOTICE refused: the income is not stable (P70): 人均纯收入 7200 元，低于 {LAST_YEAR} "
        "年本县标准 7500 元 (花名册上年人均纯收入)")
    rules.write_text(f'[income_lines.counties."{V1[:6]}"]\n{LAST_YEAR} = 7200\n', encoding="utf-8")
    out = cli.run("case", "advance", case, "NOMINATE_NOTICE", "--by", "vil1", "--note", "收入达标")
    assert out.stdout.startswith(f"case {case}: NOMINATE_NOTICE on {TODAY} by vil1; household {HA} MONITORING")
    audit = json.loads(cli.run("audit", "household", HA, "--json", "--case-db-only").stdout)
    refused = [e["detail"] for e in audit if e["action"] == "REFUSED"]
    assert len(refused) == 2 and all("NOMINATE_NOTICE refused: the income is not stable (P70)" in d for d in refused)
