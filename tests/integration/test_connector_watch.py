"""`povwatch connector watch` as a child process on the session broker: drop folders, SIGKILL mid-file and
resume (every event exactly once, counted by event_id), a file still being written, a bad file, a SQL source
(SQLite) through the service, /metrics, a clean SIGTERM."""
from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.catalog import get_feed
from connectors.framework import EventHandler, run_file
from connectors.pseudonym import Pseudonymiser
from plumbing.kafka_io import ensure_topics, read_topic, topic_end_offsets
from plumbing.settings import DEV_PSEUDONYM_KEY
from schemas.codec import default_codec
from tests.bigfile import HEADER, person_id, write_hospitalizations
from tests.unit.doubles import MemoryPublisher, fixed_clock

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
POVWATCH = str(Path(sys.executable).with_name("povwatch"))
HOSP = get_feed("medical-security", "hospitalization")
CODEC = default_codec()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def topics(broker: str) -> str:
    asyncio.run(ensure_topics(broker, 3))
    return broker


class Watch:
    def __init__(self, tmp: Path, bootstrap: str, extra: str = "", checkpoint_rows: int = 1000) -> None:
        self.drop = tmp / "drop"
        self.port = free_port()
        self.config = tmp / "medical.toml"
        self.config.write_text(
            f'department = "medical-security"\n'
            f'[service]\nstate = "state.db"\nmetrics_port = {self.port}\nsettle_seconds = 1.0\n'
            f'scan_seconds = 0.2\ncheckpoint_rows = {checkpoint_rows}\n'
            f'[kafka]\nbootstrap = "{bootstrap}"\n'
            f'[[folders]]\npath = "drop"\nfeed = "hospitalization"\n' + extra, encoding="utf-8")
        self.log = tmp / "watch.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "POVWATCH_PSEUDONYM_KEY": DEV_PSEUDONYM_KEY, "POVWATCH_MODE": "development"}
        self.proc = subprocess.Popen([POVWATCH, "connector", "watch", "--config", str(self.config)], cwd=REPO,
                                     env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, path: Path, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert self.proc is not None and self.proc.poll() is None, f"watch died:\n{self.text()}"
            assert time.monotonic() < deadline, f"{path} never appeared:\n{self.text()}"
            time.sleep(0.1)  # sleep-ok: the polling interval of a wait with a deadline

    def checkpoint_row(self) -> int:
        try:
            with sqlite3.connect(self.config.parent / "state.db", timeout=5) as db:
                row = db.execute("SELECT max(row) FROM files").fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0] or 0)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture
def watch(tmp_path: Path, topics: str) -> Iterator[Watch]:
    w = Watch(tmp_path, topics)
    yield w
    if w.proc is not None and w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait()


def expected_ids(path: Path) -> set[str]:
    handler = EventHandler(HOSP, pseudonymiser=Pseudonymiser(DEV_PSEUDONYM_KEY.encode()), codec=CODEC,
                           clock=fixed_clock())
    publisher = MemoryPublisher()
    asyncio.run(run_file(HOSP, path, handler, publisher_factory=lambda: publisher, codec=CODEC,
                         clock=fixed_clock()))
    return {CODEC.decode(m.value).record["event_id"] for m in publisher.on(HOSP.topic)}


def events_on(bootstrap: str) -> int:
    """Events acknowledged on the hospitalisation topic so far (all origins)."""
    return sum(asyncio.run(topic_end_offsets(bootstrap, [HOSP.topic])).values())


def origin_counts(bootstrap: str, origin: str) -> tuple[collections.Counter[str], collections.Counter[bytes]]:
    """event_id -> how often on the event topic, dead-letter key -> how often on the DLQ, for one origin."""
    async def read() -> tuple[collections.Counter[str], collections.Counter[bytes]]:
        events: collections.Counter[str] = collections.Counter()
        letters: collections.Counter[bytes] = collections.Counter()
        async for rec in read_topic(bootstrap, [HOSP.topic, HOSP.dlq], idle_timeout=3):
            record = CODEC.decode(rec.value).record
            if record["source"]["origin"].split("[")[0] != origin:
                continue
            if rec.topic == HOSP.topic:
                events[record["event_id"]] += 1
            else:
                assert rec.key is not None
                letters[rec.key] += 1
        return events, letters

    return asyncio.run(read())


def test_sigkill_mid_file_resumes_with_every_event_exactly_once(tmp_path: Path, topics: str) -> None:
    watch = Watch(tmp_path, topics, checkpoint_rows=4000)
    try:
        _kill_and_resume(watch, topics)
    finally:
        if watch.proc is not None and watch.proc.poll() is None:
            watch.proc.kill()


def _kill_and_resume(watch: Watch, topics: str) -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}.csv"
    staged = write_hospitalizations(watch.config.parent / name, 30_000, bad_every=1000)
    wanted = expected_ids(staged)
    assert len(wanted) == 29_970
    watch.start()
    watch.wait_for(watch.drop / "done")
    before = events_on(topics)
    os.replace(staged, watch.drop / name)
    deadline = time.monotonic() + 120
    # well into the file (checkpoints written), and between two checkpoints: more events acknowledged on the topic
    # than rows up to the last checkpoint, so some were sent after it
    while (checkpoint := watch.checkpoint_row()) < 8_000 or events_on(topics) - before <= checkpoint:
        assert time.monotonic() < deadline, watch.text()
        time.sleep(0.02)  # sleep-ok: the polling interval of a wait with a deadline
    assert watch.proc is not None
    watch.proc.kill()
    watch.proc.wait()
    killed_at = watch.checkpoint_row()
    assert 8_000 <= killed_at < 30_000 and (watch.drop / name).exists()  # killed mid-file

    watch.start()
    watch.wait_for(watch.drop / "done" / f"{name}.summary.json")
    summary = json.loads((watch.drop / "done" / f"{name}.summary.json").read_text())
    assert (summary["read"], summary["published"], summary["rejected"], summary["duplicates"]) == \
        (30_000, 29_970, 30, 0)
    [resumed] = [line for line in watch.text().splitlines() if f"{name}: resuming after row {killed_at} (" in line]
    found = int(resumed.split(" (")[1].split()[0])
    assert found > 0  # messages sent after the checkpoint reached the topics: they were not sent again
    assert not (watch.drop / name).exists() and (watch.drop / "done" / name).exists()

    events, letters = origin_counts(topics, name)
    assert set(events) == wanted                              # nothing lost
    assert sum(events.values()) == 29_970                     # nothing repeated
    assert max(events.values()) == 1
    assert sorted(letters) == sorted(f"{name}:{row}".encode() for row in range(1001, 30_002, 1000))
    assert set(letters.values()) == {1}
    assert watch.stop() == 0                                  # SIGTERM: a clean exit
    assert "stopped" in watch.text() and "Traceback" not in watch.text()


def test_a_growing_file_waits_and_a_bad_file_fails_with_its_reason(watch: Watch, topics: str) -> None:
    watch.start()
    watch.wait_for(watch.drop / "done")
    name = f"growing-{uuid.uuid4().hex[:8]}.csv"
    growing = watch.drop / name
    with growing.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for i in range(10):                                  # a row every 0.4 s for 4 s: never 1 s stable
            out.write(f"张三,{person_id(900_000 + i)},肺炎,2024-03-01,3,1000,300,2024-03-05\r\n")
            out.flush()
            time.sleep(0.4)  # sleep-ok: the behaviour under test (a file still being written is left alone)
            assert growing.exists(), "picked up while still being written"
    bad = watch.drop / f"bad-{uuid.uuid4().hex[:8]}.csv"
    bad.write_text("姓名,疾病名称\r\n张三,肺炎\r\n", encoding="utf-8")
    watch.wait_for(watch.drop / "done" / f"{name}.summary.json")
    summary = json.loads((watch.drop / "done" / f"{name}.summary.json").read_text())
    assert (summary["read"], summary["published"]) == (10, 10)   # the whole file, not a part of it
    watch.wait_for(watch.drop / "failed" / f"{bad.name}.summary.json")
    failed = json.loads((watch.drop / "failed" / f"{bad.name}.summary.json").read_text())
    assert failed["outcome"] == "failed" and (watch.drop / "failed" / bad.name).exists()
    assert failed["error"].startswith(f"{bad.name}: missing columns: 身份证号码 (id_number)")
    metrics = watch.metrics()
    assert 'povwatch_connector_files_total{department="medical-security",feed="hospitalization",outcome="failed"}' \
        in metrics
    assert 'povwatch_connector_rows_published_total{department="medical-security",feed="hospitalization"} 10.0' \
        in metrics
    assert "povwatch_connector_source_lag_seconds" in metrics
    assert watch.stop(signal.SIGINT) == 0


def _table(db: Path, rows: list[tuple[int, str, str]]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS stays (id INTEGER PRIMARY KEY, 姓名 TEXT, 身份证号码 TEXT, "
                     "疾病名称 TEXT, 入院日期 TEXT, 住院天数 INTEGER, 医疗总费用 NUMERIC, 个人自付金额 NUMERIC, "
                     "结算日期 TEXT, updated_at TEXT)")
        conn.executemany("INSERT OR REPLACE INTO stays VALUES (?, '王五', ?, '肺炎', '2024-03-01', 3, 2000, ?, "
                         "'2024-03-09', ?)", [(pk, person_id(800_000 + pk), own, at) for pk, own, at in rows])


def test_a_sql_source_through_the_watch_service(tmp_path: Path, topics: str) -> None:
    db = tmp_path / "his.db"
    table = f"stays_{uuid.uuid4().hex[:6]}"
    _table(db, [(pk, "500", f"2024-06-01 10:00:{pk:02d}") for pk in range(1, 21)] + [(21, "-1", "2024-06-01 11:00")])
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE VIEW {table} AS SELECT * FROM stays")
    w = Watch(tmp_path, topics, extra=f'[[sql]]\nfeed = "hospitalization"\nurl = "sqlite:///{db}"\n'
                                        f'table = "{table}"\nupdated_column = "updated_at"\nkey_column = "id"\n'
                                        f'interval_seconds = 0.5\nbatch_rows = 7\n')
    try:
        w.start()
        deadline = time.monotonic() + 60
        while "cursor at row 21" not in w.text():
            assert time.monotonic() < deadline and w.proc is not None and w.proc.poll() is None, w.text()
            time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline
        assert w.stop() == 0
        _table(db, [(22, "700", "2024-06-02 08:00"), (5, "650", "2024-06-02 09:00")])  # one new, one updated
        w.start()
        deadline = time.monotonic() + 60
        while "cursor at row 23" not in w.text():
            assert time.monotonic() < deadline and w.proc is not None and w.proc.poll() is None, w.text()
            time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline
        events, letters = origin_counts(topics, table)
        assert sum(events.values()) == 22 and max(events.values()) == 1   # 20 + new + updated, each once
        assert list(letters) == [f"{table}[id=21]:21".encode()]
        assert 'povwatch_connector_source_lag_seconds{source="' + table + '"}' in w.metrics()
        assert w.stop() == 0
    finally:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()


def test_configuration_errors_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    for text, message in (
        ('department = "medical-security"\n[[folders]]\npath = "d"\nfeed = "nope"\n', "folders[0]: "),
        ('department = "medical-security"\n', "nothing to watch"),
        ("department = \n", "not valid TOML"),
    ):
        config.write_text(text, encoding="utf-8")
        done = subprocess.run([POVWATCH, "connector", "watch", "--config", str(config)], capture_output=True,
                              text=True, timeout=60, cwd=REPO)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("povwatch: error: ") and message in line, line
