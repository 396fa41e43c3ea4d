"""Messy input, the hard cases (issue #6 item 5), as a department's file brings them: a quote that never closes,
ID and phone numbers written with separators in a remark, a cell of a million characters, and a row dated today
read between 00:00 and 08:00 Beijing time. Exact counts and the dead letter's content."""
from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from connectors.catalog import get_feed
from connectors.framework import DEFAULT_ZONE, EventHandler, FeedSpec, Summary, local_today, run_file
from connectors.pseudonym import Pseudonymiser
from connectors.readers import MAX_CELL_CHARS, MAX_RECORD_LINES, read_table
from plumbing.settings import Settings, load_settings
from schemas.codec import default_codec
from schemas.errors import ConfigError
from tests.unit.doubles import FIXED_NOW, TEST_KEY, MemoryPublisher, fixed_clock, make_id

CODEC = default_codec()
REG = get_feed("public-security", "registration-change")
REG_HEADER = "姓名,身份证号码,变动类型,变动日期,备注"
IDS = [make_id("652701", f"198{n}0101", 11 + n) for n in range(6)]
NAMES = ["张一", "李二", "王三", "赵四", "钱五", "孙六"]


def run(path: Path, *, now: dt.datetime = FIXED_NOW, zone: dt.tzinfo = DEFAULT_ZONE,
        spec: FeedSpec = REG) -> tuple[Summary, MemoryPublisher]:
    publisher = MemoryPublisher()
    handler = EventHandler(spec, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=fixed_clock(now))
    summary = asyncio.run(run_file(spec, path, handler, publisher_factory=lambda: publisher, codec=CODEC,
                                   clock=fixed_clock(now), zone=zone))
    assert summary.balanced
    assert len(publisher.on(spec.dlq)) == summary.rejected
    assert len(publisher.on(spec.topic)) == summary.published
    return summary, publisher


def letters(publisher: MemoryPublisher) -> list[dict[str, Any]]:
    return [CODEC.decode(m.value, expect="povwatch.DeadLetter").record for m in publisher.on(REG.dlq)]


def events(publisher: MemoryPublisher) -> list[dict[str, Any]]:
    return [CODEC.decode(m.value).record for m in publisher.on(REG.topic)]


def line(n: int, remark: str = "") -> str:
    return f"{NAMES[n]},{IDS[n]},迁出,2024-05-0{n + 1},{remark}"


# --- 1. a quote that never closes -------------------------------------------------------------------------------


def test_unbalanced_quote_costs_only_its_own_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    lines = [REG_HEADER, line(0, "第一户"), line(1, '"引号没有关上'), line(2, "第三户"), line(3, "第四户"),
             line(4, "第五户")]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    summary, publisher = run(path)
    assert (summary.read, summary.published, summary.rejected, summary.duplicates, summary.blank_lines) == (
        5, 4, 1, 0, 0)
    [(row, reasons)] = summary.rejects
    assert row == 3
    assert reasons == ("line 3: a quoted cell opens and does not close on its line (unbalanced quote); the line was "
                       "read on its own",)
    [letter] = letters(publisher)
    assert letter["source"]["row"] == 3
    assert letter["reasons"] == list(reasons)
    assert letter["fields"] == {"name": "<redacted name>", "id_number": "<redacted id>", "change_type": "迁出",
                                "change_date": "2024-05-02", "remark": "引号没有关上"}
    # every other row is published, with its own row number, and the dead letter holds nothing of theirs
    assert [e["source"]["row"] for e in events(publisher)] == [2, 4, 5, 6]
    assert [e["remark"] for e in events(publisher)] == ["第一户", "第三户", "第四户", "第五户"]


def test_unbalanced_quote_in_the_middle_of_a_row_and_a_legitimate_multiline_cell(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("\r\n".join([
        REG_HEADER,
        f'{NAMES[0]},{IDS[0]},"迁出,2024-05-01,半个',  # the quote opens in 变动类型 and runs into the next lines
        line(1, "第二户"),
        line(2, '"第一行\r\n第二行"'),  # a real cell with a line break: one row
        line(3, "第四户"),
    ]) + "\r\n", encoding="utf-8")
    summary, publisher = run(path)
    assert (summary.read, summary.published, summary.rejected) == (4, 3, 1)
    [(row, reasons)] = summary.rejects
    assert row == 2
    assert reasons[0].startswith("line 2: a quoted cell opens and does not close")
    assert "change_type: unknown value '迁出,2024-05-01,半个'" in reasons[1]
    assert "change_date: missing 变动日期" in reasons
    assert [(e["source"]["row"], e["remark"]) for e in events(publisher)] == [
        (3, "第二户"), (4, "第一行\r\n第二行"), (5, "第四户")]


def test_reader_gives_every_physical_line_a_row_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text('a,b\r\n1,"x\r\n2,y\r\n3,z\r\n', encoding="utf-8")
    table = read_table(path)
    assert list(table.rows) == [(2, ["1", "x"]), (3, ["2", "y"]), (4, ["3", "z"])]
    assert list(table.problems) == [2]


def test_a_quoted_cell_over_too_many_lines_is_an_unbalanced_quote(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    body = "\r\n".join(f"第{n}行" for n in range(MAX_RECORD_LINES + 5))
    path.write_text(f'a\r\n"{body}"\r\nlast\r\n', encoding="utf-8")
    table = read_table(path)
    rows = list(table.rows)
    assert len(rows) == MAX_RECORD_LINES + 5 + 1
    assert rows[0] == (2, ["第0行"]) and rows[-1] == (len(rows) + 1, ["last"])
    assert 2 in table.problems
    # at the limit it is still one cell
    path.write_text("a\r\n\"" + "\r\n".join(["x"] * MAX_RECORD_LINES) + "\"\r\nlast\r\n", encoding="utf-8")
    table = read_table(path)
    assert list(table.rows) == [(2, ["\r\n".join(["x"] * MAX_RECORD_LINES)]), (3, ["last"])]
    assert table.problems == {}


# --- 2. ID and phone numbers with separators in 备注 -------------------------------------------------------------


@pytest.mark.parametrize("written", [
    "652701 19800101 0029", "652701-19800101-0029", "652701.19800101.0029", "６５２７０１　１９８００１０１　００２９",
    "６５２７０１１９８００１０１００２９", "652 701 1980 0101 0029", "652701－19800101－0029",
])
def test_id_number_with_separators_in_a_remark_is_masked(tmp_path: Path, written: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text("\r\n".join([REG_HEADER, line(0, f"配偶身份证{written}电话138 0013 8000"),
                                 line(1, "联系 138-0013-8000；2024-03-05 已核实")]) + "\r\n", encoding="utf-8")
    summary, publisher = run(path)
    assert (summary.read, summary.published, summary.rejected) == (2, 2, 0)
    first, second = events(publisher)
    assert first["remark"] == "配偶身份证<id-redacted>电话<phone-redacted>"
    assert second["remark"] == "联系 <phone-redacted>;2024-03-05 已核实"
    for message in publisher.sent:
        text = message.value.decode("utf-8", errors="ignore")
        assert "0029" not in text and "8000" not in text


def test_separated_id_number_in_a_rejected_row_is_masked_in_the_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"{REG_HEADER}\r\n{NAMES[0]},{IDS[0]},失踪,2024-05-01,身份证 652701 19800101 0029 手机"
                    f"13800138000\r\n", encoding="utf-8")
    summary, publisher = run(path)
    assert (summary.read, summary.published, summary.rejected) == (1, 0, 1)
    [letter] = letters(publisher)
    assert letter["fields"]["remark"] == "身份证 <id-redacted> 手机<phone-redacted>"


# --- 3. a cell of a million characters --------------------------------------------------------------------------


def test_a_million_character_cell_rejects_its_row_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("\r\n".join([REG_HEADER, line(0, "正常"), line(1, "长" * 1_000_000), line(2, "正常")]) + "\r\n",
                    encoding="utf-8")
    summary, publisher = run(path)
    assert (summary.read, summary.published, summary.rejected) == (3, 2, 1)
    assert summary.rejects == [(3, ("column 5 (备注): cell of 1,000,000 characters, over the limit of 10,000",))]
    [letter] = letters(publisher)
    assert letter["fields"]["remark"] == "<oversized cell: 1000000 characters>"
    assert len(publisher.on(REG.dlq)[0].value) < 2_000
    assert [e["source"]["row"] for e in events(publisher)] == [2, 4]


def test_an_oversized_quoted_cell_and_an_oversized_id_cell(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("\r\n".join([REG_HEADER, f'"{NAMES[0]}","{"1" * 200_000}",迁出,2024-05-01,"x"',
                                 line(1)]) + "\r\n", encoding="utf-8")
    summary, _ = run(path)
    assert (summary.read, summary.published, summary.rejected) == (2, 1, 1)
    # the placeholder is not validated as an ID number: one reason, the size
    assert summary.rejects == [(2, ("column 2 (身份证号码): cell of 200,000 characters, over the limit of 10,000",))]


def test_a_cell_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text(f"a,b\r\n{'x' * MAX_CELL_CHARS},1\r\n", encoding="utf-8")
    table = read_table(path)
    assert list(table.rows) == [(2, ["x" * MAX_CELL_CHARS, "1"])] and table.problems == {}


# --- 4. today in the prefecture's time zone ---------------------------------------------------------------------


def test_a_row_dated_today_in_beijing_is_accepted_before_eight_utc(tmp_path: Path) -> None:
    # 2024-07-02 02:00 Beijing time is 2024-07-01 18:00 UTC: the department's "today" is already the 2nd
    now = dt.datetime(2024, 7, 1, 18, 0, tzinfo=dt.UTC)
    path = tmp_path / "r.csv"
    path.write_text(f"{REG_HEADER}\r\n{NAMES[0]},{IDS[0]},死亡,2024-07-02,\r\n"
                    f"{NAMES[1]},{IDS[1]},死亡,2024-07-03,\r\n", encoding="utf-8")
    summary, publisher = run(path, now=now)
    assert (summary.read, summary.published, summary.rejected) == (2, 1, 1)
    assert summary.rejects == [(3, ("change_date: date in the future: 2024-07-03",))]
    assert events(publisher)[0]["change_date"] == dt.date(2024, 7, 2)
    # judged in UTC the same file loses the row dated today
    summary, _ = run(path, now=now, zone=dt.UTC)
    assert (summary.published, summary.rejected) == (0, 2)


def test_local_today() -> None:
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    assert local_today(dt.datetime(2024, 7, 1, 15, 59, tzinfo=dt.UTC), shanghai) == dt.date(2024, 7, 1)
    assert local_today(dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC), shanghai) == dt.date(2024, 7, 2)
    assert local_today(dt.datetime(2024, 7, 1, 16, 0), shanghai) == dt.date(2024, 7, 2)  # naive = UTC
    assert local_today(dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC)) == dt.date(2024, 7, 2)  # default zone


def test_timezone_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POVWATCH_TIMEZONE", raising=False)
    assert Settings().timezone == "Asia/Shanghai"
    assert Settings().zone == zoneinfo.ZoneInfo("Asia/Shanghai")
    monkeypatch.setenv("POVWATCH_TIMEZONE", "Asia/Urumqi")
    assert load_settings().zone == zoneinfo.ZoneInfo("Asia/Urumqi")
    monkeypatch.setenv("POVWATCH_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="POVWATCH_TIMEZONE: .*unknown time zone 'Mars/Olympus'"):
        load_settings()


@pytest.mark.parametrize("end", ["", "\r\n", "\n"])
def test_a_multiline_cell_in_the_last_row_is_one_row(tmp_path: Path, end: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(f'a,b\r\n1,"x\r\ny"{end}', encoding="utf-8")
    table = read_table(path)
    assert list(table.rows) == [(2, ["1", "x\r\ny"])] and table.problems == {}
    path.write_text(f'a,b\r\n1,"x\r\ny{end}', encoding="utf-8")  # never closed
    table = read_table(path)
    assert list(table.rows) == [(2, ["1", "x"])] + ([(3, ["y"])])
    assert list(table.problems) == [2]


def test_ingest_passes_the_configured_zone_down(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.ingest as ingest

    seen: dict[str, Any] = {}

    async def fake(*args: Any, **kwargs: Any) -> str:
        seen.update(kwargs)
        return "done"

    monkeypatch.setenv("POVWATCH_TIMEZONE", "Asia/Urumqi")
    monkeypatch.setattr(ingest, "run_file", fake)
    monkeypatch.setattr(ingest, "load_snapshot", fake)
    audited: list[str] = []

    async def audit_run(settings: Any, summary: Any, kind: str = "connector.run") -> None:
        audited.append(kind)  # the run's audit record goes to Kafka; here only that it is written after the run

    monkeypatch.setattr(ingest, "audit_run", audit_run)
    settings = load_settings()
    pending = ingest.run_connector(settings, "public-security", "registration-change", Path("r.csv"))
    assert asyncio.run(pending) == "done"
    assert seen.pop("zone") == zoneinfo.ZoneInfo("Asia/Urumqi")
    assert asyncio.run(ingest.load_roster(settings, Path("roster.csv"))) == "done"
    assert seen.pop("zone") == zoneinfo.ZoneInfo("Asia/Urumqi")
    assert audited == ["connector.run", "roster.load"]
