"""The connector framework end to end without a broker: real feed specs, real files, the real codec, an
in-memory publisher. Every run checks the invariant read == published + rejected + duplicates and that no name
or raw ID number is in any message sent."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from connectors.catalog import EVENT_FEEDS, ROSTER, get_feed
from connectors.departments.bureau import RosterHandler
from connectors.framework import CONNECTOR_VERSION, EventHandler, FeedSpec, RowHandler, Summary, event_id_of, run_file
from connectors.idcard import check_character
from connectors.pseudonym import Pseudonymiser
from schemas.codec import default_codec
from schemas.errors import InputFileError, UnknownFeed
from tests.unit.doubles import FIXED_NOW, TEST_KEY, MemoryPublisher, fixed_clock, make_id, write_csv

CODEC = default_codec()
PSEUDO = Pseudonymiser(TEST_KEY)
HOSP = get_feed("medical-security", "hospitalization")
REG = get_feed("public-security", "registration-change")
VEHICLE = get_feed("public-security", "vehicle-purchase")
DISASTER = get_feed("emergency", "disaster-loss")
DROPOUT = get_feed("education", "dropout")

HOSP_HEADER = ["姓名", "身份证号码", "疾病名称", "入院日期", "住院天数", "医疗总费用", "个人自付金额", "结算日期"]
REG_HEADER = ["姓名", "身份证号码", "变动类型", "变动日期", "备注"]
VILLAGE = "652701100201"

# The feed contract's first ID, 652701198001011234, has a wrong check character. By hand, GB 11643 weights
# 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 over 6 5 2 7 0 1 1 9 8 0 0 1 0 1 1 2 3:
# 42+45+20+35+0+4+2+9+48+0+0+9+0+5+8+8+6 = 241; 241 mod 11 = 10 -> "10X98765432"[10] = "2".
ZHANG_ID = "652701198001011232"
# The second, 65270119900101123X: the same sum with 9*6 instead of 8*6 = 247; 247 mod 11 = 5 -> "7", not X.
LI_ID_BAD = "65270119900101123X"


def person_key(id18: str) -> str:
    """Computed here independently of connectors.pseudonym: HMAC-SHA256(key, ID number), hex."""
    return hmac.new(TEST_KEY, id18.encode("ascii"), hashlib.sha256).hexdigest()


def event_handler(spec: FeedSpec, now: dt.datetime = FIXED_NOW) -> EventHandler:
    return EventHandler(spec, pseudonymiser=PSEUDO, codec=CODEC, clock=fixed_clock(now))


def run(spec: FeedSpec, path: Path, handler: RowHandler | None = None, *, now: dt.datetime = FIXED_NOW,
        secrets: Iterable[str] = ()) -> tuple[Summary, MemoryPublisher]:
    """Run one file; check the invariant, the message counts and that no secret is in any message."""
    publisher = MemoryPublisher()
    handler = handler or event_handler(spec, now)
    summary = asyncio.run(run_file(spec, path, handler, publisher_factory=lambda: publisher, codec=CODEC,
                                   clock=fixed_clock(now)))
    assert summary.read == summary.published + summary.rejected + summary.duplicates
    assert summary.balanced
    assert (publisher.entered, publisher.exited, publisher.flushes) == (1, 1, 1)
    assert len(publisher.on(spec.dlq)) == summary.rejected == len(summary.rejects)
    if spec is not ROSTER:
        assert len(publisher.on(spec.topic)) == summary.published
    assert_no_secrets(publisher, secrets)
    return summary, publisher


def assert_no_secrets(publisher: MemoryPublisher, secrets: Iterable[str]) -> None:
    secrets = [s for s in secrets if s]
    for message in publisher.sent:
        text = message.key.decode("utf-8", errors="ignore") + message.value.decode("utf-8", errors="ignore")
        for secret in secrets:
            assert secret not in text, f"{secret!r} travels on {message.topic}"


def decoded(publisher: MemoryPublisher, topic: str, expect: str | None = None) -> list[dict[str, Any]]:
    return [CODEC.decode(m.value, expect=expect).record for m in publisher.on(topic)]


def hosp_row(name: str, id_number: str, *, disease: str = "肺炎", admitted: str = "2024-04-01", days: str = "5",
             total: str = "6200", oop: str = "1200", settled: str = "2024-04-06") -> list[str]:
    return [name, id_number, disease, admitted, days, total, oop, settled]


# --- the worked example of the feed contract -------------------------------------------------------------------


@pytest.fixture
def worked_example(tmp_path: Path) -> Path:
    assert check_character(ZHANG_ID[:17]) == "2" and check_character(LI_ID_BAD[:17]) == "7"
    return write_csv(tmp_path / "住院结算_202404.csv", [
        HOSP_HEADER,
        ["张三", ZHANG_ID, "脑梗死", "2024/3/5", "12", "38,200.00", "14500", "2024-03-18"],
        ["李四", LI_ID_BAD, "肺炎", "2024-04-01", "5", "6200", "-30", "2024-04-06"],
    ], encoding="gbk")


def test_worked_example_counts_and_reasons(worked_example: Path) -> None:
    summary, _ = run(HOSP, worked_example, secrets=["张三", "李四", ZHANG_ID, LI_ID_BAD, LI_ID_BAD[:17]])
    assert (summary.read, summary.published, summary.rejected, summary.duplicates) == (2, 1, 1, 0)
    assert summary.encoding == "gb18030"
    assert summary.blank_lines == 0
    [(row, reasons)] = summary.rejects
    assert row == 3
    assert "out_of_pocket: negative amount" in reasons
    assert "id_number: invalid ID number: check character is X, expected 7" in reasons
    assert len(reasons) == 2


def test_worked_example_event_content(worked_example: Path) -> None:
    _, publisher = run(HOSP, worked_example)
    [message] = publisher.on("events.medical-security.hospitalization")
    assert message.key == person_key(ZHANG_ID).encode("ascii")
    decoded_message = CODEC.decode(message.value)
    assert decoded_message.name == "povwatch.events.Hospitalization"
    event = decoded_message.record
    assert event["person_key"] == person_key(ZHANG_ID)
    assert event["disease"] == "脑梗死"
    assert event["admission_date"] == dt.date(2024, 3, 5) == event["occurred_at"]
    assert event["settlement_date"] == dt.date(2024, 3, 18)
    assert event["days"] == 12
    assert event["total_cost"] == Decimal("38200.00")
    assert event["out_of_pocket"] == Decimal("14500.00")
    assert event["ingested_at"] == FIXED_NOW
    assert event["source"] == {"department": "medical-security", "feed": "hospitalization",
                               "origin": "住院结算_202404.csv", "row": 2, "connector_version": CONNECTOR_VERSION,
                               "key_id": PSEUDO.key_id}
    assert "name" not in event and "id_number" not in event
    assert len(event["event_id"]) == 32


def test_worked_example_dead_letter(worked_example: Path) -> None:
    summary, publisher = run(HOSP, worked_example)
    [message] = publisher.on("dlq.medical-security")
    assert message.key == "住院结算_202404.csv:3".encode()
    letter = CODEC.decode(message.value, expect="povwatch.DeadLetter").record
    assert letter["source"]["row"] == 3
    assert letter["source"]["origin"] == "住院结算_202404.csv"
    assert letter["stage"] == "connector"
    assert letter["reasons"] == list(summary.rejects[0][1])
    assert letter["rejected_at"] == FIXED_NOW
    assert letter["fields"]["name"] == "<redacted name>"
    assert letter["fields"]["id_number"] == "<redacted id>"
    assert letter["fields"]["out_of_pocket"] == "-30"
    assert letter["fields"]["disease"] == "肺炎"
    assert set(letter["fields"]) == {c.field for c in HOSP.columns}


# --- event identity --------------------------------------------------------------------------------------------


def test_event_id_is_deterministic_across_runs_and_distinct_per_row(tmp_path: Path) -> None:
    other = make_id("652701", "19750612", 31)
    path = write_csv(tmp_path / "h.csv", [HOSP_HEADER, hosp_row("张三", ZHANG_ID), hosp_row("王五", other),
                                          hosp_row("张三", ZHANG_ID, oop="1201")])
    _, first = run(HOSP, path)
    # a second run, later (another ingestion time), with a fresh handler and publisher
    _, second = run(HOSP, path, now=FIXED_NOW + dt.timedelta(days=3))
    ids_first = [e["event_id"] for e in decoded(first, HOSP.topic)]
    ids_second = [e["event_id"] for e in decoded(second, HOSP.topic)]
    assert ids_first == ids_second
    assert len(set(ids_first)) == 3
    assert [e["ingested_at"] for e in decoded(second, HOSP.topic)] == [FIXED_NOW + dt.timedelta(days=3)] * 3


def test_event_id_depends_on_department_and_feed() -> None:
    body = {"person_key": "k", "admission_date": dt.date(2024, 3, 5), "out_of_pocket": Decimal("1.50")}
    base = event_id_of("medical-security", "hospitalization", body)
    assert base == event_id_of("medical-security", "hospitalization", dict(reversed(list(body.items()))))
    assert base != event_id_of("medical-security", "other-feed", body)
    assert base != event_id_of("civil-affairs", "hospitalization", body)
    assert base != event_id_of("medical-security", "hospitalization", {**body, "out_of_pocket": Decimal("1.51")})


# --- headers ---------------------------------------------------------------------------------------------------


def test_header_variants_are_bound_by_name(tmp_path: Path) -> None:
    # shuffled order, spaces, a full-width space, unit suffixes (full-width and ASCII brackets), an unknown column
    header = ["结算日期", " 姓名 ", "身份证号码\u3000", "医院名称", "\u3000疾病名称", "入院日期", "住院天数",
              "医疗总费用(元)", "个人自付金额（元）"]
    path = write_csv(tmp_path / "h.csv", [
        header, ["2024-04-06", "张三", ZHANG_ID, "博乐市人民医院", "肺炎", "2024-04-01", "5", "6200", "1234.5"],
    ], encoding="utf-8-sig")
    summary, publisher = run(HOSP, path, secrets=["张三", ZHANG_ID])
    assert (summary.published, summary.encoding) == (1, "utf-8-sig")
    [event] = decoded(publisher, HOSP.topic)
    assert event["out_of_pocket"] == Decimal("1234.50")
    assert event["total_cost"] == Decimal("6200.00")
    assert event["settlement_date"] == dt.date(2024, 4, 6)
    assert event["disease"] == "肺炎"


def test_english_field_names_are_aliases(tmp_path: Path) -> None:
    header = ["name", "id_number", "disease", "admission_date", "days", "Total_Cost", "out_of_pocket",
              "settlement_date"]
    path = write_csv(tmp_path / "h.csv", [header, hosp_row("张三", ZHANG_ID, oop="777")])
    summary, publisher = run(HOSP, path)
    assert summary.published == 1
    assert decoded(publisher, HOSP.topic)[0]["out_of_pocket"] == Decimal("777.00")


def test_missing_required_column_fails_before_the_publisher_starts(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", [HOSP_HEADER[:6] + HOSP_HEADER[7:], hosp_row("张三", ZHANG_ID)[:7]])
    started: list[MemoryPublisher] = []

    def factory() -> MemoryPublisher:
        started.append(MemoryPublisher())
        return started[-1]

    with pytest.raises(InputFileError) as info:
        asyncio.run(run_file(HOSP, path, event_handler(HOSP), publisher_factory=factory, codec=CODEC,
                             clock=fixed_clock()))
    assert str(info.value) == "h.csv: missing column: 个人自付金额 (out_of_pocket)"
    assert started == []


def test_every_missing_column_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", [["姓名", "疾病名称", "入院日期", "住院天数", "医疗总费用", "结算日期"]])
    with pytest.raises(InputFileError,
                       match=r"missing columns: 身份证号码 \(id_number\), 个人自付金额 \(out_of_pocket\)"):
        run(HOSP, path)


def test_optional_column_may_be_absent(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [REG_HEADER[:4], ["张三", ZHANG_ID, "死亡", "2024-05-02"]])
    summary, publisher = run(REG, path)
    assert summary.published == 1
    [event] = decoded(publisher, REG.topic)
    assert event["remark"] is None and event["change_type"] == "DEATH"


def test_a_column_given_twice_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", [HOSP_HEADER + ["out_of_pocket"], hosp_row("张三", ZHANG_ID) + ["1"]])
    with pytest.raises(InputFileError, match=r"个人自付金额 \(out_of_pocket\) appears twice \(columns 7 and 9\)"):
        run(HOSP, path)


# --- duplicates, blank lines, every reason ----------------------------------------------------------------------


def test_exact_duplicates_are_counted_and_published_once(tmp_path: Path) -> None:
    row = hosp_row("张三", ZHANG_ID)
    path = write_csv(tmp_path / "h.csv", [HOSP_HEADER, row, row, hosp_row("张三", ZHANG_ID, oop="9"), row])
    summary, publisher = run(HOSP, path)
    assert (summary.read, summary.published, summary.rejected, summary.duplicates) == (4, 2, 0, 2)
    assert [e["source"]["row"] for e in decoded(publisher, HOSP.topic)] == [2, 4]


def test_blank_lines_are_reported_apart(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    lines = [",".join(HOSP_HEADER), ",".join(hosp_row("张三", ZHANG_ID)), "", ",,,,,,,",
             ",".join(hosp_row("王五", make_id("652701", "19750612", 31))), " , ,\u3000", ""]
    path.write_text("\r\n".join(lines), encoding="utf-8")
    summary, publisher = run(HOSP, path)
    assert (summary.read, summary.published, summary.blank_lines) == (2, 2, 3)
    # rows keep the numbers the department sees in Excel, blank lines included
    assert [e["source"]["row"] for e in decoded(publisher, HOSP.topic)] == [2, 5]


def test_a_row_lists_every_reason_and_missing_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", [
        HOSP_HEADER, ["张三", "12345", "", "2024-02-30", "五天", "6200", "abc", "2099-01-01"]])
    summary, _ = run(HOSP, path, secrets=["张三"])
    [(row, reasons)] = summary.rejects
    assert row == 2
    assert reasons == (
        "id_number: invalid ID number: has 5 characters, expected 18 (or legacy 15)",
        "disease: missing 疾病名称",
        "admission_date: not a real date: 2024-02-30",
        "days: not a whole number: '五天'",
        "out_of_pocket: not an amount: 'abc'",
        "settlement_date: date in the future: 2099-01-01",
    )


def test_legacy_and_full_width_id_numbers_join_on_the_same_person_key(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", [
        HOSP_HEADER,
        hosp_row("老王", "110105491231002", oop="1"),
        hosp_row("老王", " １１０１０５１９４９１２３１００２ｘ ", oop="2"),
    ])
    summary, publisher = run(HOSP, path, secrets=["老王", "110105491231002", "11010519491231002X"])
    assert summary.published == 2
    keys = {e["person_key"] for e in decoded(publisher, HOSP.topic)}
    assert keys == {person_key("11010519491231002X")}


# --- privacy ---------------------------------------------------------------------------------------------------


def test_remark_with_own_id_and_name_is_masked_in_the_event(tmp_path: Path) -> None:
    spouse = make_id("652701", "19820304", 22)
    path = write_csv(tmp_path / "r.csv", [
        REG_HEADER,
        ["张三", ZHANG_ID, "死亡", "2024-05-02", f"张三本人身份证{ZHANG_ID}, 配偶{spouse}已核实"],
        ["李四", make_id("652701", "19900101", 11), "迁出", "2024/5/3", ""],
    ])
    summary, publisher = run(REG, path, secrets=["张三", "李四", ZHANG_ID, spouse])
    assert summary.published == 2
    first, second = decoded(publisher, REG.topic, expect="povwatch.events.RegistrationChange")
    assert first["remark"] == "<name-redacted>本人身份证<id-redacted>, 配偶<id-redacted>已核实"
    assert first["change_type"] == "DEATH" and first["change_date"] == dt.date(2024, 5, 2)
    assert second["remark"] is None and second["change_type"] == "MOVE_OUT"


def test_rejected_row_leaks_neither_name_nor_id(tmp_path: Path) -> None:
    # a remark quoting the row's own name and ID; the row is rejected (unknown change type), so it goes to
    # the dead letter: the remark there must be as clean as in an event
    path = write_csv(tmp_path / "r.csv", [
        REG_HEADER,
        ["张三", ZHANG_ID, "失踪", "2024-05-02", f"张三本人, 身份证{ZHANG_ID}"],
    ])
    summary, publisher = run(REG, path, secrets=["张三", ZHANG_ID])
    assert summary.rejected == 1
    [letter] = decoded(publisher, REG.dlq, expect="povwatch.DeadLetter")
    assert letter["fields"]["remark"] == "<name-redacted>本人, 身份证<id-redacted>"
    assert letter["reasons"] == [
        "change_type: unknown value '失踪' (expected one of 死亡 / 迁出 / 出生 / 嫁入 / 嫁出 / 注销)"]


def test_an_id_number_in_the_wrong_column_does_not_reach_the_dead_letter(tmp_path: Path) -> None:
    # a name with an unquoted comma shifts the row one column right: the ID number lands under 变动类型
    path = tmp_path / "r.csv"
    path.write_text(f"{','.join(REG_HEADER)}\r\n张,三,{ZHANG_ID},死亡,2024-05-02\r\n", encoding="utf-8")
    summary, publisher = run(REG, path, secrets=[ZHANG_ID])
    assert summary.rejected == 1
    [(_, reasons)] = summary.rejects
    assert ("change_type: unknown value '<id-redacted>' (expected one of 死亡 / 迁出 / 出生 / 嫁入 / 嫁出 / 注销)"
            in reasons)
    [letter] = decoded(publisher, REG.dlq)
    assert letter["reasons"] == list(reasons)
    assert letter["fields"]["change_type"] == "<id-redacted>"


# --- the five event feeds --------------------------------------------------------------------------------------


def test_every_event_feed_publishes_its_schema(tmp_path: Path) -> None:
    # the five headline feeds; every department's other feeds: tests/unit/test_feeds_*.py
    assert {("public-security", "registration-change"), ("public-security", "vehicle-purchase"),
            ("medical-security", "hospitalization"), ("emergency", "disaster-loss"),
            ("education", "dropout")} <= set(EVENT_FEEDS)
    student = make_id("652701", "20120915", 42)
    files = [
        (VEHICLE, [["姓名", "身份证号码", "车辆类型", "品牌型号", "购买日期", "上牌日期", "购车价格（元）"],
                  ["张三", ZHANG_ID, "小型轿车", "比亚迪秦PLUS", "2024年5月1日", "2024-05-08", "119,800"],
                  ["张三", ZHANG_ID, "三轮车", "宗申", "2024-05-02", "2024-05-02", ""]]),
        (DISASTER, [["户主姓名", "户主身份证号码", "行政区划代码", "灾害类型", "灾害发生日期", "死亡人数", "受伤人数",
                    "房屋损毁", "直接经济损失"],
                   ["张三", ZHANG_ID, VILLAGE, "洪涝", "20240620", "0", "2", "严重损坏", "52000元"]]),
        (DROPOUT, [["学生姓名", "学生身份证号码", "学校名称", "学段", "年级", "辍学日期"],
                  ["张小明", student, "博乐市第三中学", "初中", "八年级", "2024-03-11"]]),
    ]
    results = {}
    for spec, rows in files:
        summary, publisher = run(spec, write_csv(tmp_path / f"{spec.feed}.csv", rows),
                                 secrets=["张三", "张小明", ZHANG_ID, student])
        assert summary.rejected == 0, summary.rejects
        results[spec.feed] = decoded(publisher, spec.topic, expect=spec.schema)
    car, tricycle = results["vehicle-purchase"]
    assert car["price"] == Decimal("119800.00") and tricycle["price"] is None
    assert car["purchase_date"] == car["occurred_at"] == dt.date(2024, 5, 1)
    assert car["model"] == "比亚迪秦PLUS"
    [loss] = results["disaster-loss"]
    assert (loss["disaster_type"], loss["house_damage"], loss["village_code"]) == ("FLOOD", "SERIOUS", VILLAGE)
    assert loss["direct_loss"] == Decimal("52000.00") and loss["injuries"] == 2
    assert loss["person_key"] == person_key(ZHANG_ID)
    [drop] = results["dropout"]
    assert (drop["stage"], drop["grade"], drop["school"]) == ("JUNIOR", "八年级", "博乐市第三中学")
    assert drop["person_key"] == person_key(student)
    assert drop["occurred_at"] == dt.date(2024, 3, 11)


def test_unknown_feed_names_the_known_ones() -> None:
    with pytest.raises(UnknownFeed, match="known feeds: .*medical-security hospitalization"):
        get_feed("medical-security", "pharmacy")


def test_xlsx_file_with_date_and_number_cells(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(HOSP_HEADER)
    sheet.append(["张三", ZHANG_ID, "脑梗死", dt.datetime(2024, 3, 5), 12, 38200.0, 14500.5, dt.date(2024, 3, 18)])
    sheet.append([None] * 8)
    sheet.append(["李四", LI_ID_BAD, "肺炎", dt.datetime(2024, 4, 1), 5, 6200, -30, dt.datetime(2024, 4, 6)])
    book.save(tmp_path / "h.xlsx")
    summary, publisher = run(HOSP, tmp_path / "h.xlsx", secrets=["张三", "李四", ZHANG_ID, LI_ID_BAD])
    assert (summary.read, summary.published, summary.rejected, summary.encoding) == (2, 1, 1, "xlsx")
    [event] = decoded(publisher, HOSP.topic)
    assert event["admission_date"] == dt.date(2024, 3, 5)
    assert event["total_cost"] == Decimal("38200.00") and event["out_of_pocket"] == Decimal("14500.50")
    assert event["days"] == 12
    assert summary.rejects[0][0] == 4


# --- cross-field checks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("admitted, settled, total, oop, reason", [
    ("2024-04-06", "2024-04-01", "6200", "100", "settlement_date: settled before the admission date"),
    ("2024-04-01", "2024-04-06", "6200", "6200.01", "out_of_pocket: larger than the total cost"),
])
def test_hospitalization_cross_field_checks(tmp_path: Path, admitted: str, settled: str, total: str, oop: str,
                                            reason: str) -> None:
    path = write_csv(tmp_path / "h.csv", [
        HOSP_HEADER,
        hosp_row("张三", ZHANG_ID, admitted=admitted, settled=settled, total=total, oop=oop),
        # the boundary: same-day settlement, out-of-pocket equal to the total
        hosp_row("张三", ZHANG_ID, admitted="2024-04-01", settled="2024-04-01", total="6200", oop="6200"),
    ])
    summary, _ = run(HOSP, path)
    assert summary.rejects == [(2, (reason,))]
    assert summary.published == 1


def test_plate_registered_before_purchase_is_rejected(tmp_path: Path) -> None:
    header = ["姓名", "身份证号码", "车辆类型", "品牌型号", "购买日期", "上牌日期"]
    path = write_csv(tmp_path / "v.csv", [header,
                                           ["张三", ZHANG_ID, "小型轿车", "五菱宏光", "2024-05-08", "2024-05-01"],
                                           ["张三", ZHANG_ID, "小型轿车", "五菱宏光", "2024-05-08", "2024-05-08"]])
    summary, _ = run(VEHICLE, path)
    assert summary.rejects == [(2, ("registration_date: plate registered before the purchase date",))]
    assert summary.published == 1


# --- the roster ------------------------------------------------------------------------------------------------

ROSTER_HEADER = ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态", "劳动能力",
                 "上年人均纯收入", "家庭人口数"]
HEAD1 = make_id("652701", "19680305", 11)  # man
WIFE1 = make_id("652701", "19700811", 22)  # woman
SON1 = make_id("652701", "19950120", 33)  # man
HEAD2 = make_id("652722", "19550101", 44)  # woman
HH1 = "BL-100201-0001"
HH2 = "BL-100201-0002"
NAMES = ["王建国", "李秀兰", "王小军", "马桂英", "王某某"]


def roster_row(hh: str, name: str, id_number: str, sex: str, relation: str, *, village: str = VILLAGE,
               category: str = "脱贫户", status: str = "监测中", labour: str = "弱劳动能力", income: str = "6800",
               size: str = "3") -> list[str]:
    return [hh, name, id_number, sex, relation, village, category, status, labour, income, size]


def run_roster(tmp_path: Path, rows: Sequence[Sequence[str]]) -> tuple[Summary, MemoryPublisher]:
    path = write_csv(tmp_path / "roster.csv", [ROSTER_HEADER, *rows])
    handler = RosterHandler(pseudonymiser=PSEUDO, codec=CODEC, clock=fixed_clock())
    return run(ROSTER, path, handler, secrets=[*NAMES, HEAD1, WIFE1, SON1, HEAD2])


def test_roster_publishes_persons_and_one_household_each(tmp_path: Path) -> None:
    summary, publisher = run_roster(tmp_path, [
        roster_row(HH1, "王小军", SON1, "男", "子"),  # the head is not the first row of the household
        roster_row(HH1, "王建国", HEAD1, "男", "户主"),
        roster_row(HH1, "李秀兰", WIFE1, "女", "配偶"),
        roster_row(HH2, "马桂英", HEAD2, "2", "户主", village="652701100202", category="边缘易致贫户",
                   status="风险消除", labour="无劳动能力", income="4,200.5", size="1"),
    ])
    assert (summary.read, summary.published, summary.rejected, summary.extra_messages) == (4, 4, 0, 2)
    persons = publisher.on("registry.persons")
    assert [m.key for m in persons] == [person_key(i).encode("ascii") for i in (SON1, HEAD1, WIFE1, HEAD2)]
    son = CODEC.decode(persons[0].value, expect="povwatch.registry.Person").record
    assert son["birth_date"] == dt.date(1995, 1, 20)
    assert (son["sex"], son["relation"], son["household_id"], son["village_code"]) == ("M", "子", HH1, VILLAGE)
    assert son["source"]["row"] == 2 and son["ingested_at"] == FIXED_NOW
    households = publisher.on("registry.households")
    assert [m.key for m in households] == [HH1.encode(), HH2.encode()]
    first, second = (CODEC.decode(m.value, expect="povwatch.registry.Household").record for m in households)
    assert first["head_person_key"] == person_key(HEAD1)
    assert (first["category"], first["monitoring_status"], first["labour_capacity"]) == ("LIFTED", "MONITORING",
                                                                                         "WEAK")
    assert first["per_capita_income"] == Decimal("6800.00") and first["household_size"] == 3
    assert second["head_person_key"] == person_key(HEAD2)
    assert (second["category"], second["monitoring_status"], second["labour_capacity"]) == (
        "MARGINAL", "RISK_ELIMINATED", "NONE")
    assert second["per_capita_income"] == Decimal("4200.50") and second["village_code"] == "652701100202"


def test_household_without_a_head_has_no_head_key(tmp_path: Path) -> None:
    _, publisher = run_roster(tmp_path, [roster_row(HH1, "李秀兰", WIFE1, "女", "配偶")])
    [household] = decoded(publisher, "registry.households")
    assert household["head_person_key"] is None


def test_roster_row_contradicting_its_household_names_the_row(tmp_path: Path) -> None:
    summary, publisher = run_roster(tmp_path, [
        roster_row(HH1, "王建国", HEAD1, "男", "户主"),
        roster_row(HH1, "李秀兰", WIFE1, "女", "配偶", village="652701100202", income="7000"),
        roster_row(HH1, "王小军", SON1, "男", "子"),
    ])
    assert (summary.published, summary.rejected) == (2, 1)
    assert summary.rejects == [(3, (f"village_code: differs from row 2 of household {HH1}",
                                    f"per_capita_income: differs from row 2 of household {HH1}"))]
    [letter] = decoded(publisher, "dlq.bureau")
    assert letter["fields"]["name"] == "<redacted name>" and letter["fields"]["id_number"] == "<redacted id>"
    [household] = decoded(publisher, "registry.households")
    assert household["village_code"] == VILLAGE and household["per_capita_income"] == Decimal("6800.00")


def test_second_head_of_household_is_rejected(tmp_path: Path) -> None:
    summary, publisher = run_roster(tmp_path, [
        roster_row(HH1, "王建国", HEAD1, "男", "户主"),
        roster_row(HH1, "李秀兰", WIFE1, "女", "户主"),
    ])
    assert summary.rejects == [(3, (f"relation: household {HH1} already has a 户主 on row 2",))]
    [household] = decoded(publisher, "registry.households")
    assert household["head_person_key"] == person_key(HEAD1)


def test_person_listed_twice(tmp_path: Path) -> None:
    summary, publisher = run_roster(tmp_path, [
        roster_row(HH1, "王建国", HEAD1, "男", "户主"),
        roster_row(HH1, "王建国", HEAD1, "男", "户主"),  # identical: a duplicate
        roster_row(HH1, "王建国", HEAD1, "男", "其他"),  # different: rejected
        roster_row(HH2, "王建国", HEAD1, "男", "户主", village="652701100202"),  # in another household: rejected
    ])
    assert (summary.read, summary.published, summary.duplicates, summary.rejected) == (4, 1, 1, 2)
    assert summary.rejects == [
        (4, (f"id_number: the same person is already listed on row 2 (household {HH1})",)),
        (5, (f"id_number: the same person is already listed on row 2 (household {HH1})",)),
    ]
    assert len(publisher.on("registry.persons")) == 1
    assert [m.key for m in publisher.on("registry.households")] == [HH1.encode()]


def test_sex_contradicting_the_id_number_is_rejected(tmp_path: Path) -> None:
    summary, _ = run_roster(tmp_path, [
        roster_row(HH1, "王建国", HEAD1, "女", "户主"),
        roster_row(HH1, "李秀兰", WIFE1, "F", "配偶"),
    ])
    assert summary.rejects == [(2, ("sex: does not match the sex encoded in the ID number",))]
    assert summary.published == 1
