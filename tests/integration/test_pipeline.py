"""The whole pipeline on the real broker, driven through the command line as an operator runs it.

One scenario (tests/integration/scenario.py) flows through roster load, the five connectors, the monitor
(a real `povwatch monitor` child process) and the casefeed. The tests run in file order and share that state:
summaries -> exact alerts -> re-run gives nothing new -> crash and restart loses and doubles nothing ->
case DB -> privacy scan of every topic on the broker.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from plumbing import kafka_local
from plumbing.kafka_io import read_topic
from plumbing.processes import ChildProcess, metric, wait_until
from plumbing.settings import Settings
from schemas.codec import default_codec
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL, dlq_topic
from services.demo.run import monitor_settled, read_alerts
from tests.integration.scenario import VILLAGE_A, VILLAGE_B, Scenario, build

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pipeline:
    def __init__(self, bootstrap: str, workdir: Path) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.scenario: Scenario = build(workdir / "files")
        run = uuid.uuid4().hex[:8]
        self.monitor_port = _free_port()
        self.env = {
            "POVWATCH_BOOTSTRAP": bootstrap,
            "POVWATCH_MONITOR_APP_ID": f"it-monitor-{run}",
            "POVWATCH_MONITOR_METRICS_PORT": str(self.monitor_port),
            # events about people outside the roster wait 4 s (not 30 days) before they are listed as unmatched
            "POVWATCH_MONITOR_PENDING_GRACE_DAYS": str(4 / 86400),
            "POVWATCH_MONITOR_SWEEP_SECONDS": "0.5",
            "POVWATCH_CASE_DB": f"sqlite:///{workdir / 'cases.db'}",
            "POVWATCH_CASEFEED_GROUP": f"it-casefeed-{run}",
            "POVWATCH_CASEFEED_METRICS_PORT": str(_free_port()),
        }
        self.monitor: ChildProcess | None = None
        self.published = 0  # events published so far, over every run of the connectors

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"povwatch {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def run_feeds(self) -> dict[str, dict[str, Any]]:
        out = {}
        for department, feed, path in self.scenario.feeds:
            out[feed] = json.loads(self.cli("connector", "run", department, feed, str(path), "--json").stdout)
            self.published += out[feed]["published"]
        return out

    def start_monitor(self) -> None:
        self.monitor = ChildProcess(["monitor"], env=self.env, log_path=self.workdir / "monitor.log")

    def settle(self, events_this_process: int) -> None:
        assert self.monitor is not None
        wait_until(self.monitor_port, monitor_settled(events_this_process), timeout=120, child=self.monitor,
                   what="the monitor to settle")

    def ours(self, alert: dict[str, Any]) -> bool:
        """An alert about this scenario's households or villages (other test modules share the session broker
        and its alert topics)."""
        return (alert.get("household_id") in self.scenario.households
                or alert.get("region_code") in (VILLAGE_A, VILLAGE_B))

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        return [(topic, a) for topic, a in asyncio.run(read_alerts(self.bootstrap)) if self.ours(a)]


# The pipeline's assertions are exact over whole topics (every dead letter of dlq.medical-security, every
# unmatched event, every duplicate), so it runs on a broker of its own, not the session's shared one.
PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 700


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(bootstrap=f"127.0.0.1:{PORT}", kafka_data=tmp_path_factory.mktemp("pipeline-kafka"))
    kafka_local.up(settings)
    try:
        yield settings.bootstrap
    finally:
        kafka_local.down(settings)


@pytest.fixture(scope="module")
def pipeline(own_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(own_broker, tmp_path_factory.mktemp("pipeline"))
    p.cli("topics", "ensure")
    p.roster_summary = json.loads(p.cli("roster", "load", str(p.scenario.roster), "--json").stdout)  # type: ignore
    p.start_monitor()
    p.summaries = p.run_feeds()  # type: ignore[attr-defined]
    p.settle(p.published)
    yield p
    if p.monitor is not None:
        p.monitor.stop()


def _household_keys(alerts: list[tuple[str, dict[str, Any]]]) -> set[tuple[str, str, str]]:
    return {(a["household_id"], a["rule"], a["severity"]) for t, a in alerts if t == ALERTS_HOUSEHOLD}


def test_roster_and_connector_summaries_add_up(pipeline: Pipeline) -> None:
    roster = pipeline.roster_summary  # type: ignore[attr-defined]
    assert (roster["read"], roster["published"], roster["rejected"]) == (26, 26, 0)  # 4 + 3 + 2 + 5 x 3 + 2 members
    assert roster["extra_messages"] == 9  # one record per household
    for feed, want in pipeline.scenario.expected_counts.items():
        got = pipeline.summaries[feed]  # type: ignore[attr-defined]
        assert {k: got[k] for k in want} == want, feed
        assert got["read"] == got["published"] + got["rejected"] + got["duplicates"]
        assert len(got["rejects"]) == got["rejected"]
    hosp = {r["row"]: r["reasons"] for r in pipeline.summaries["hospitalization"]["rejects"]}  # type: ignore
    assert hosp[7] == ["out_of_pocket: negative amount"]
    assert any("date in the future" in reason for reason in hosp[8])


def test_exactly_the_expected_alerts(pipeline: Pipeline) -> None:
    alerts = pipeline.alerts()
    assert _household_keys(alerts) == pipeline.scenario.expected_alerts
    regional = [a for t, a in alerts if t == ALERTS_REGIONAL]
    assert [a["region_code"] for a in regional] == sorted(pipeline.scenario.expected_regional)
    assert sorted(regional[0]["household_ids"]) == ["H04", "H05", "H06", "H07", "H08"]
    # every alert is explained: its events exist on the event topics, and the reason carries the figures
    codec = default_codec()
    event_ids = set()
    topics = [f"events.{d}.{f}" for d, f, _ in pipeline.scenario.feeds]

    async def collect() -> None:
        async for rec in read_topic(pipeline.bootstrap, topics, idle_timeout=2):
            event_ids.add(codec.decode(rec.value).record["event_id"])

    asyncio.run(collect())
    for _, alert in alerts:
        assert alert["event_ids"] and set(alert["event_ids"]) <= event_ids
    reasons = {(a["household_id"], a["rule"]): a["reason"] for t, a in alerts if t == ALERTS_HOUSEHOLD}
    assert "住院个人自付14500元" in reasons[("H01", "MEDICAL_EXPENSE")]
    assert "时年75岁" in reasons[("H01", "DEATH_IN_HOUSEHOLD")]
    h03 = next(a for t, a in alerts if t == ALERTS_HOUSEHOLD and a["household_id"] == "H03")
    assert len(h03["event_ids"]) == 2  # both stays are behind the HIGH medical alert
    # the outsider's death waits for its person, then is listed as unmatched once the grace period is over
    samples = wait_until(pipeline.monitor_port, lambda s: metric(s, "povwatch_events_unmatched_total") == 1,
                         timeout=30, child=pipeline.monitor, what="the outsider's event to be given up on")
    assert metric(samples, "povwatch_events_parked_total", stage="person") == 1
    assert metric(samples, "povwatch_events_pending", stage="person") == 0
    assert metric(samples, "povwatch_alerts_total", rule="DISASTER_LOSS", severity="MEDIUM") == 4
    listed = json.loads(pipeline.cli("monitor", "unmatched", "--json").stdout)
    assert [(u["feed"], u["stage"]) for u in listed] == [("public-security registration-change", "person")]
    assert "person_key" not in json.dumps(listed)


def test_dead_letters_carry_row_and_reasons(pipeline: Pipeline) -> None:
    codec = default_codec()
    letters: list[dict[str, Any]] = []

    async def collect() -> None:
        async for rec in read_topic(pipeline.bootstrap, [dlq_topic("medical-security")], idle_timeout=2):
            letters.append(codec.decode(rec.value, "povwatch.DeadLetter").record)

    asyncio.run(collect())
    by_row = {letter["source"]["row"]: letter for letter in letters}
    assert set(by_row) == {7, 8}
    assert by_row[7]["reasons"] == ["out_of_pocket: negative amount"]
    assert by_row[7]["fields"]["name"] == "<redacted name>"
    assert by_row[7]["fields"]["id_number"] == "<redacted id>"
    assert by_row[7]["source"]["origin"] == "hospitalization.csv"


def test_rerunning_the_same_files_raises_nothing_new(pipeline: Pipeline) -> None:
    before = pipeline.alerts()
    again = pipeline.run_feeds()
    for feed, want in pipeline.scenario.expected_counts.items():
        assert {k: again[feed][k] for k in want} == want
    pipeline.settle(pipeline.published)
    after = pipeline.alerts()
    assert len(after) == len(before)
    assert {a["alert_id"] for _, a in after} == {a["alert_id"] for _, a in before}
    samples = wait_until(pipeline.monitor_port, lambda s: metric(s, "povwatch_events_unmatched_total") == 2,
                         timeout=30, child=pipeline.monitor, what="the outsider's event to be given up on again")
    assert metric(samples, "povwatch_events_duplicate_total") == 18  # 19 events again, less the outsider
    # listed once: the list is keyed by event id
    assert len(json.loads(pipeline.cli("monitor", "unmatched", "--json").stdout)) == 1


def test_crash_and_restart_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    assert pipeline.monitor is not None
    before = {a["alert_id"] for _, a in pipeline.alerts()}
    pipeline.monitor.kill()  # SIGKILL: no clean shutdown, no final commit
    summary = json.loads(pipeline.cli("connector", "run", "medical-security", "hospitalization",
                                      str(pipeline.scenario.extra_hospitalization), "--json").stdout)
    assert summary["published"] == 1
    pipeline.start_monitor()
    # after the restart the registry and the medical history come back from the changelogs: the new stay
    # is judged with the earlier one (2000 + 14500 >= 50% of 32000), and nothing else is raised twice
    wait_until(pipeline.monitor_port,
               lambda s: metric(s, "povwatch_alerts_total", rule="MEDICAL_EXPENSE", severity="HIGH") >= 1,
               timeout=120, child=pipeline.monitor, what="the alert on the new stay")
    after = pipeline.alerts()
    new = [a for _, a in after if a["alert_id"] not in before]
    assert {(a["household_id"], a["rule"], a["severity"]) for a in new} == {pipeline.scenario.extra_expected}
    assert len({a["alert_id"] for a in new}) == 1
    assert len(new[0]["event_ids"]) == 2
    assert before <= {a["alert_id"] for _, a in after}  # nothing lost
    # nothing doubled: one alert per (household, rule, events behind it)
    causes = Counter((a["household_id"], a["rule"], tuple(sorted(a["event_ids"]))) for _, a in after
                     if "household_id" in a)
    distinct = {(a["household_id"], a["rule"], tuple(sorted(a["event_ids"]))): a["alert_id"] for _, a in after
                if "household_id" in a}
    assert len(distinct) == len({a["alert_id"] for _, a in after if "household_id" in a})
    assert all(n >= 1 for n in causes.values())


def test_casefeed_attaches_each_alert_once(pipeline: Pipeline) -> None:
    distinct = {a["alert_id"] for _, a in pipeline.alerts()}
    first = pipeline.cli("casefeed", "--timeout", "3")
    assert "evidence" in first.stdout
    scenario = pipeline.scenario.households | {VILLAGE_A, VILLAGE_B}
    cases = [c for c in json.loads(pipeline.cli("cases", "list", "--json").stdout)
             if c["household_or_region"] in scenario]
    evidence = [e["alert_id"] for c in cases for e in c["evidence"]]
    assert sorted(evidence) == sorted(distinct)
    subjects = Counter((c["subject_kind"], c["household_or_region"]) for c in cases)
    assert all(n == 1 for n in subjects.values())  # one open case per household / village
    households = {h for h, _, _ in pipeline.scenario.expected_alerts}
    assert {s for k, s in subjects if k == "household"} == households
    # a second consumer group re-reads everything: still one evidence row per alert
    pipeline.env["POVWATCH_CASEFEED_GROUP"] += "-again"
    second = pipeline.cli("casefeed", "--timeout", "3")
    assert "evidence 0," in second.stdout  # nothing new: every alert of the topic is in the DB already
    cases_again = [c for c in json.loads(pipeline.cli("cases", "list", "--json").stdout)
                   if c["household_or_region"] in scenario]
    assert sum(len(c["evidence"]) for c in cases_again) == len(distinct)
    table = pipeline.cli("cases", "list").stdout
    assert "H01" in table and "SCHOOL_DROPOUT" in table


def test_alerts_tail_prints_every_alert(pipeline: Pipeline) -> None:
    out = pipeline.cli("alerts", "tail", "--json", "--from-beginning", "--timeout", "3").stdout
    lines = [a for a in map(json.loads, out.splitlines()) if pipeline.ours(a)]
    assert {a["alert_id"] for a in lines} == {a["alert_id"] for _, a in pipeline.alerts()}
    text = pipeline.cli("alerts", "tail", "--from-beginning", "--timeout", "3").stdout
    assert "户 H01" in text and "住院个人自付" in text


def test_no_id_number_or_name_on_any_topic(pipeline: Pipeline) -> None:
    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
        await admin.start()
        try:
            return sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        finally:
            await admin.close()

    names = asyncio.run(topics())
    assert "registry.persons" in names and any(t.endswith("-state") for t in names)
    needles = {i.encode() for i in pipeline.scenario.ids}
    needles |= {i.lower().encode() for i in pipeline.scenario.ids}
    for name in pipeline.scenario.names:
        needles |= {name.encode("utf-8"), name.encode("gb18030")}
    scanned = 0

    async def scan() -> None:
        nonlocal scanned
        async for rec in read_topic(pipeline.bootstrap, names, idle_timeout=3):
            blob = (rec.key or b"") + rec.value
            for needle in needles:
                assert needle not in blob, f"{rec.topic}[{rec.partition}]@{rec.offset} carries input data"
            scanned += 1

    asyncio.run(scan())
    assert scanned > 100


def test_bad_invocations_give_one_line_errors(pipeline: Pipeline, tmp_path: Path) -> None:
    missing = pipeline.cli("connector", "run", "medical-security", "hospitalization", str(tmp_path / "nope.csv"),
                           check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    unknown = pipeline.cli("connector", "run", "medical-security", "surgery", str(tmp_path / "x.csv"), check=False)
    assert unknown.returncode == 2 and "unknown feed" in unknown.stderr
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("姓名,身份证号码\n张三,11010519491231002X\n", encoding="utf-8")
    columns = pipeline.cli("connector", "run", "medical-security", "hospitalization", str(wrong), check=False)
    assert columns.returncode == 2 and "missing columns" in columns.stderr and "个人自付金额" in columns.stderr
    pipeline.env["POVWATCH_BOOTSTRAP"] = f"127.0.0.1:{_free_port()}"
    try:
        down = pipeline.cli("connector", "run", "medical-security", "hospitalization",
                            str(pipeline.scenario.extra_hospitalization), check=False)
    finally:
        pipeline.env["POVWATCH_BOOTSTRAP"] = pipeline.bootstrap
    assert down.returncode == 2 and "cannot reach Kafka" in down.stderr and "Traceback" not in down.stderr
    assert len([ln for ln in down.stderr.splitlines() if ln.startswith("povwatch: error")]) == 1
