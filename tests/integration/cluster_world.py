"""What the cluster fault tests share (tests/integration/test_cluster_faults.py; docs/cluster.md): a cluster of
three on the module's ports, the roster and a big hospitalisation file with an exactly known set of alerting
rows, the monitor and the case feed as processes, and the counts from source to case DB:

    events_by_id(bootstrap, topic)   every event on the topic, counted by event_id (a duplicate shows as 2)
    alerts_by_id(bootstrap, prefix)  every household alert of the prefix's households on the topic, by alert_id
    case_alert_ids(url, prefix)      the alert ids in the case DB's evidence of the prefix's households
    regional ids, topic and DB       the same for regional alerts (villages), which the file raises as it may

The households are rich (per-capita income 1,000,000 CNY, two members): a stay of 15,000 CNY out of pocket raises
exactly one MEDIUM `MEDICAL_EXPENSE` alert, a stay of 100 CNY none, and no household's stays come near the 50 %
share of its income that would make them HIGH.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plumbing.kafka_cluster import Cluster
from plumbing.kafka_io import ensure_topics, group_offsets, project_topics, read_topic, topic_end_offsets
from plumbing.processes import ChildProcess, metric, wait_until
from plumbing.settings import Settings
from schemas.codec import default_codec
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services.casedb.database import open_database
from services.demo.population import FEED_HEADERS
from services.monitor.app import monitor_topics
from tests.integration.ops_world import Household, World, households, roster_file

BASE = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092"))
FIRST_PORT = BASE + 990  # nodes on + 990, + 992, + 994; controllers one above each
MONITOR_METRICS = BASE + 996
CASEFEED_METRICS = BASE + 997
HOSPITALIZATION = "events.medical-security.hospitalization"
APP = "povwatch-monitor"
CASEFEED_GROUP = "povwatch-casefeed"
ALERTING, QUIET = "15000.00", "100.00"


def wait_for(condition: Callable[[], bool], what: str, timeout: float, *, alive: Callable[[], str] = str) -> None:
    """Until `condition()`; `alive()` returns "" while the processes it watches run, else what died."""
    deadline = time.monotonic() + timeout
    while not condition():
        died = alive()
        assert not died, f"{died} while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)  # sleep-ok: the polling interval of a wait with a deadline


@dataclass
class ClusterWorld:
    """A cluster of three in `workdir`, the module's ports, and the command line and services against it."""

    workdir: Path
    cluster: Cluster
    world: World
    case_db: str
    monitor_metrics: int = MONITOR_METRICS
    casefeed_metrics: int = CASEFEED_METRICS
    children: list[ChildProcess] = field(default_factory=list)

    @classmethod
    def start(cls, workdir: Path, *, first_port: int = FIRST_PORT, monitor_metrics: int = MONITOR_METRICS,
              casefeed_metrics: int = CASEFEED_METRICS, before_up: Callable[[Cluster], None] = lambda _: None,
              ) -> ClusterWorld:
        """A cluster of three whose node 1 listens on `first_port` (the module's ports by default);
        `before_up(cluster)` runs before its nodes are formatted (e.g. to mount a file system on a node's log dir)."""
        data = workdir / "kafka"
        cluster = Cluster(Settings(bootstrap=f"127.0.0.1:{first_port}", kafka_data=data), 3)
        before_up(cluster)
        try:
            cluster.up()
            # every topic, the monitor's own too, made with all three brokers up: replication factor 3 everywhere
            asyncio.run(ensure_topics(cluster.bootstrap, 3, project_topics() + monitor_topics(APP)))
        except BaseException:
            cluster.down()
            raise
        world = World(Settings(bootstrap=cluster.bootstrap, kafka_data=data), workdir)
        case_db = f"sqlite:///{workdir / 'cases.db'}"
        world.env |= {"POVWATCH_CASE_DB": case_db, "POVWATCH_MONITOR_APP_ID": APP,
                      "POVWATCH_CASEFEED_GROUP": CASEFEED_GROUP}
        return cls(workdir, cluster, world, case_db, monitor_metrics, casefeed_metrics)

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def monitor(self) -> ChildProcess:
        child, _ = self.world.monitor(APP, "monitor", POVWATCH_MONITOR_METRICS_PORT=str(self.monitor_metrics))
        return child

    def casefeed(self) -> ChildProcess:
        env = {**self.world.env, "POVWATCH_CASEFEED_METRICS_PORT": str(self.casefeed_metrics)}
        child = ChildProcess(["casefeed"], env=env, log_path=self.workdir / "casefeed.log")
        self.children.append(child)  # stopped by stop() if the test ends first
        return child

    def wait_monitor_ready(self, monitor: ChildProcess, timeout: float = 180) -> None:
        wait_until(self.monitor_metrics, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=timeout,
                   child=monitor, what="the monitor's registry ready")

    def stop(self) -> None:
        self.world.stop_all()
        for child in self.children:
            if child.alive:
                child.stop()
        self.cluster.down()


def stays_rows(hhs: list[Household], per_person: int, alerting_every: int,
               first: dt.date = dt.date(2025, 1, 1)) -> tuple[bytes, int]:
    """A hospitalisation CSV: `per_person` stays for every member (one a day apart, so each row is distinct);
    one stay in `alerting_every` of a person's is of 15,000 CNY out of pocket (one alert each), the others of
    100 CNY. The file's bytes and the number of alerting rows."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(FEED_HEADERS["hospitalization"])
    alerting = 0
    for k in range(per_person):
        day = first + dt.timedelta(days=k)
        for h in hhs:
            for number in h.members:
                loud = k % alerting_every == 0
                alerting += loud
                writer.writerow(["测试", number, "肺炎", day.isoformat(), 1, "30000.00", ALERTING if loud else QUIET,
                                 (day + dt.timedelta(days=1)).isoformat()])
    return buf.getvalue().encode("utf-8"), alerting


def write_world_files(workdir: Path, prefix: str, count: int, per_person: int,
                      alerting_every: int) -> tuple[Path, Path, int, int]:
    """(roster file, stays file, rows, alerting rows) for `count` two-member households of `prefix`."""
    hhs = households(prefix, count, members=2)
    roster = roster_file(workdir / f"{prefix}-roster.csv", hhs)
    data, alerting = stays_rows(hhs, per_person, alerting_every)
    stays = workdir / f"{prefix}-stays.csv"
    stays.write_bytes(data)
    return roster, stays, count * 2 * per_person, alerting


def events_by_id(bootstrap: str, topic: str) -> Counter[str]:
    codec = default_codec()

    async def read() -> Counter[str]:
        found: Counter[str] = Counter()
        async for rec in read_topic(bootstrap, [topic], idle_timeout=3.0):
            found[str(codec.decode(rec.value).record["event_id"])] += 1
        return found

    return asyncio.run(read())


def alerts_on_topics(bootstrap: str, prefix: str) -> tuple[Counter[str], Counter[str]]:
    """(household alerts of the prefix's households, every regional alert): alert_id -> times on the topic."""
    codec = default_codec()

    async def read() -> tuple[Counter[str], Counter[str]]:
        household: Counter[str] = Counter()
        regional: Counter[str] = Counter()
        async for rec in read_topic(bootstrap, [ALERTS_HOUSEHOLD, ALERTS_REGIONAL], idle_timeout=3.0):
            alert = codec.decode(rec.value).record
            if rec.topic == ALERTS_REGIONAL:
                regional[str(alert["alert_id"])] += 1
            elif str(alert.get("household_id", "")).startswith(prefix):
                household[str(alert["alert_id"])] += 1
        return household, regional

    return asyncio.run(read())


def case_alert_ids(url: str, prefix: str) -> tuple[int, Counter[str], Counter[str]]:
    """(cases of the prefix's households, their evidence's alert ids, every other case's alert ids): each id
    with the number of evidence rows that name it."""
    with open_database(url) as store:
        cases = store.list_cases()
    mine = [c for c in cases if c.household_or_region.startswith(prefix)]
    others = [c for c in cases if not c.household_or_region.startswith(prefix)]
    return (len(mine), Counter(e.alert_id for c in mine for e in c.evidence),
            Counter(e.alert_id for c in others for e in c.evidence))


def casefeed_caught_up(bootstrap: str) -> bool:
    """The case feed has committed every alert on both alert topics (it commits after the case DB's commit)."""
    ends = asyncio.run(topic_end_offsets(bootstrap, [ALERTS_HOUSEHOLD, ALERTS_REGIONAL]))
    done = asyncio.run(group_offsets(bootstrap, CASEFEED_GROUP))
    return all(done.get(tp, 0) >= end for tp, end in ends.items())


def published(bootstrap: str, topic: str) -> int:
    return sum(asyncio.run(topic_end_offsets(bootstrap, [topic])).values())
