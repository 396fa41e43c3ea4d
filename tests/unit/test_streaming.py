"""Streaming reads: the compact duplicate set, the progress line, the capped reject list, the TOML configuration,
and flat memory: a child process reads and runs 1,000,000 rows and its peak RSS is measured."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connectors.digests import DigestSet
from connectors.framework import MAX_REJECTS_LISTED
from connectors.progress import Progress, render
from schemas.errors import ConfigError
from services.watch.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_digest_set_is_a_set() -> None:
    digests = DigestSet(capacity=4)
    assert all(digests.add(f"id-{i}") for i in range(5000))       # grows past its first capacity
    assert not any(digests.add(f"id-{i}") for i in range(5000))
    assert len(digests) == 5000 and "id-42" in digests and "id-5000" not in digests


def test_progress_line_and_quiet_when_not_a_terminal() -> None:
    assert render("h.csv", 120_000, 8.0, 25, 100) == "h.csv: 120,000 rows  15,000 rows/s  25%  ETA 0:00:24"
    assert render("h.xlsx", 10, 1.0, 0, 0) == "h.xlsx: 10 rows  10 rows/s"
    quiet = io.StringIO()
    meter = Progress("h.csv", lambda: (1, 2), stream=quiet)        # StringIO is not a terminal
    meter.update(5)
    meter.close()
    assert quiet.getvalue() == ""
    ticks = iter([0.0, 1.0, 1.1, 2.0, 3.0])
    loud = io.StringIO()
    meter = Progress("h.csv", lambda: (50, 100), stream=loud, enabled=True, clock=lambda: next(ticks))
    meter.update(1000)   # drawn
    meter.update(1100)   # within the interval: not drawn
    meter.update(2000)   # drawn
    meter.close()
    assert loud.getvalue().count("\r") == 3 and loud.getvalue().endswith("\n")
    assert "h.csv: 2,000 rows  667 rows/s  50%  ETA 0:00:03" in loud.getvalue()


def test_watch_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIS_PASSWORD", "s3cret")
    config = tmp_path / "dept.toml"
    config.write_text(textwrap.dedent("""
        department = "medical-security"
        [service]
        metrics_port = 9999
        [[folders]]
        path = "drop"
        feed = "hospitalization"
        [[sql]]
        feed = "hospitalization"
        url = "postgresql+psycopg://reader:${HIS_PASSWORD}@db/his"
        table = "v_discharge"
        updated_column = "updated_at"
        key_column = "id"
    """), encoding="utf-8")
    loaded = load_config(config)
    assert loaded.folders[0].path == tmp_path / "drop" and loaded.state == tmp_path / "dept.state.db"
    assert loaded.sql[0].spec.url == "postgresql+psycopg://reader:s3cret@db/his"
    assert (loaded.sql[0].spec.name, loaded.sql[0].interval, loaded.metrics_port) == ("v_discharge", 60.0, 9999)
    for broken, message in (
        ('department = "medical-security"\n[[folders]]\npath = "d"\nfeed = "hospitalization"\nspeed = 1\n',
         "folders[0]: unknown key speed"),
        ('department = "medical-security"\n[[sql]]\nfeed = "hospitalization"\nurl = "${NOPE_NOT_SET}"\n'
         'table = "t"\nupdated_column = "u"\nkey_column = "k"\n', "environment variable NOPE_NOT_SET is not set"),
        ('department = "medical-security"\n[[sql]]\nfeed = "hospitalization"\nurl = "x"\nupdated_column = "u"\n'
         'key_column = "k"\n', "give either table or query"),
        ('department = "medical-security"\n[service]\nsettle_seconds = "5"\n[[folders]]\npath = "d"\n'
         'feed = "hospitalization"\n', "service.settle_seconds: expected int/float"),
    ):
        config.write_text(broken, encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(config)


def test_deploy_examples_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.compare.config import load_compare_config

    monkeypatch.setenv("HIS_DB_PASSWORD", "example")
    examples = sorted((REPO / "deploy" / "connectors").glob("*.toml"))
    assert len(examples) >= 3
    kinds = set()
    for path in examples:
        if "[comparison]" in path.read_text(encoding="utf-8") and "[[folders]]" not in path.read_text("utf-8"):
            load_compare_config(path)  # a comparison connector's file (povwatch connector compare)
            kinds.add("comparison")
            continue
        loaded = load_config(path)
        kinds |= {"folder"} if loaded.folders else set()
        kinds |= {"sql"} if loaded.sql else set()
    assert kinds == {"folder", "sql", "comparison"}


CHILD = """
import asyncio, datetime as dt, json, sys
from pathlib import Path
from connectors.catalog import get_feed
from connectors.framework import EventHandler, run_file
from connectors.pseudonym import Pseudonymiser
from schemas.codec import default_codec
from tests.bigfile import write_hospitalizations

class Discard:
    sent = 0
    async def __aenter__(self): return self
    async def __aexit__(self, *exc): return None
    async def send(self, topic, key, value): Discard.sent += 1
    async def flush(self): return None

path, rows = Path(sys.argv[1]), int(sys.argv[2])
write_hospitalizations(path, rows, bad_every=500)
spec, codec = get_feed("medical-security", "hospitalization"), default_codec()
clock = lambda: dt.datetime(2024, 7, 1, tzinfo=dt.UTC)
handler = EventHandler(spec, pseudonymiser=Pseudonymiser(b"k" * 32), codec=codec, clock=clock)
summary = asyncio.run(run_file(spec, path, handler, publisher_factory=Discard, codec=codec, clock=clock))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the (big) pytest parent's peak
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rss_mb": hwm / 1024, "sent": Discard.sent,
                  "size_mb": path.stat().st_size / 2**20, **summary.as_dict()}))
"""


def _peak(tmp_path: Path, rows: int) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / f"h{rows}.csv"), str(rows)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_a_million_rows_stay_under_200_mb(tmp_path: Path) -> None:
    """The whole connector path (streamed CSV, validation, events, dead letters) over 1,000,000 rows with a
    publisher that discards: peak RSS of the child under 200 MB, and no more than a few MB above the same run
    over 20,000 rows (memory does not grow with the file). About 90 s on a 2-core machine: marked slow."""
    small, big = _peak(tmp_path, 20_000), _peak(tmp_path, 1_000_000)
    assert (big["read"], big["published"], big["rejected"], big["sent"]) == (1_000_000, 998_000, 2000, 1_000_000)
    assert len(big["rejects"]) == MAX_REJECTS_LISTED and big["rejects_not_listed"] == 1000  # type: ignore[arg-type]
    assert big["rss_mb"] < 200, big  # type: ignore[operator]
    assert big["rss_mb"] - small["rss_mb"] < 60, (small, big)  # type: ignore[operator]
