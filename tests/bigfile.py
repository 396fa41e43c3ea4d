"""Large, valid department files for the streaming and resume tests: hospitalisation rows, every one distinct.

`write_hospitalizations(path, rows, bad_every=0)` writes a UTF-8 CSV of `rows` data rows quickly (one formatted
line each); with `bad_every=N` every N-th row has a negative amount (rejected: a dead letter)."""
from __future__ import annotations

from pathlib import Path

from connectors.idcard import check_character

HEADER = "姓名,身份证号码,疾病名称,入院日期,住院天数,医疗总费用,个人自付金额,结算日期\r\n"


def person_id(index: int) -> str:
    """A valid 18-character ID number, distinct for every index below 36,500,000 (birth date x serial)."""
    day, serial = divmod(index, 1000)
    year, doy = 1940 + day // 365, day % 365
    month, mday = 1 + doy // 28 % 12, 1 + doy % 28
    first17 = f"652701{year:04d}{month:02d}{mday:02d}{serial:03d}"
    return first17 + check_character(first17)


def write_hospitalizations(path: Path, rows: int, *, bad_every: int = 0) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for i in range(rows):
            cost = 1000 + i % 50000
            own = "-5" if bad_every and i % bad_every == bad_every - 1 else str(cost // 3)
            out.write(f"患者{i % 997},{person_id(i)},肺炎,2024-0{1 + i % 6}-1{i % 10},{1 + i % 20},{cost},"
                      f"{own},2024-06-2{i % 10}\r\n")
    return path
