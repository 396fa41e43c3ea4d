"""One writer per topic, end to end on the session broker: the roster load writes `registry.households`, the case
DB's relay `registry.household-status`, and the monitor judges a household by the later of the two.

Driven through the command line as an operator would: `roster load` (which also fills the case DB's households and
members), a case carried from APPLY to LABEL, `relay --once`, a running `povwatch monitor`, vehicle purchases (an
ASSET_PURCHASE alert is raised only for a household under monitoring, so each purchase shows the status the
monitor holds for the household at that moment):

  1. roster (未纳入) then the LABEL's status: the purchase after the label raises ASSET_PURCHASE; the roster topic
     still holds the roster's record alone, the status topic the label's (no name, no ID number);
  2. the same roster snapshot loaded again after the LABEL: nothing re-sent, the label stands - also for a monitor
     restarted afterwards, which reads both tables from the beginning in whatever order they come;
  3. a newer snapshot that changes the household (风险消除): the bureau's export is the later word, no alert;
     `cases publish-status` (run once after upgrading) queues the same decision again, harmlessly.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from plumbing.kafka_io import read_topic
from plumbing.processes import ChildProcess, metric, scrape, wait_until
from plumbing.settings import Settings
from schemas.codec import default_codec
from schemas.topics import REGISTRY_HOUSEHOLD_STATUS, REGISTRY_HOUSEHOLDS
from services.casedb.database import open_database
from tests.casedb_behaviour import household_alert
from tests.desk_world import opened_before
from tests.integration.ops_world import VILLAGE, World, households, roster_file, vehicles_file

pytestmark = pytest.mark.integration

USERS = (("v1", "village", VILLAGE), ("t1", "township", VILLAGE[:9]), ("c1", "county", VILLAGE[:6]))
STEPS = (("APPLY", "v1", "2025-01-01"), ("PUBLIC_NOTICE", "v1", "2025-01-02"), ("TOWNSHIP_VERIFY", "t1", "2025-01-08"),
         ("COUNTY_CONFIRM", "c1", "2025-01-09"), ("DATA_COMPARE", "c1", "2025-01-10"), ("LABEL", "c1", "2025-01-11"))


async def _read(broker: str, topic: str) -> list[Any]:
    return [r async for r in read_topic(broker, [topic], idle_timeout=2.0)]


def _records(broker: str, topic: str, key: str) -> list[dict[str, Any]]:
    codec = default_codec()
    return [codec.decode(r.value).record for r in asyncio.run(_read(broker, topic)) if r.key == key.encode()]


def _purchase_alerted(world: World, monitor: ChildProcess, port: int, prefix: str, member: str, day: dt.date,
                      tmp_path: Path) -> bool:
    """Publish one vehicle purchase of `member` on `day`, wait until the household stage judged it, and say whether
    an ASSET_PURCHASE alert of that day was raised."""
    before = metric(scrape(port), "povwatch_monitor_processed_total", stage="household")
    world.publish("public-security", "vehicle-purchase", vehicles_file(tmp_path / f"v-{day}.csv", [member], day=day))
    wait_until(port, lambda s: metric(s, "povwatch_monitor_processed_total", stage="household") > before,
               timeout=90, child=monitor, what=f"the purchase of {day} to be judged")
    return any(a["rule"] == "ASSET_PURCHASE" and a["occurred_at"] == day for a in world.alerts(prefix))


def _wait_status_read(port: int, monitor: ChildProcess, at_least: float) -> None:
    wait_until(port, lambda s: metric(s, "povwatch_events_consumed_total", topic=REGISTRY_HOUSEHOLD_STATUS)
               >= at_least, timeout=60, child=monitor, what="the monitor to read the status record")


def test_roster_and_label_each_on_its_own_topic_the_later_deciding(broker: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"HST{run}"
    world = World(Settings(bootstrap=broker, kafka_data=tmp_path / "unused"), tmp_path)
    db = f"sqlite:///{tmp_path / 'cases.db'}"
    world.env.update({"POVWATCH_CASE_DB": db, "POVWATCH_RELAY_GROUP": f"relay-{run}",
                      "POVWATCH_RELAY_METRICS_PORT": "0"})
    world.cli("topics", "ensure")
    labelled, other = households(prefix, 2, members=2, status="未纳入")
    old_export = roster_file(tmp_path / "roster-old.csv", [labelled, other])
    loaded = world.roster(old_export)
    assert loaded["case_db"]["refreshed"] and loaded["case_db"]["counts"]["members_added"] == 4  # one load, both
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n", encoding="utf-8")
    for name, role, region in USERS:
        world.cli("users", "add", name, "--role", role, "--region", region, "--password-file", str(secret))
    store = open_database(db)
    try:
        case_id = store.record_household_alert({**household_alert(f"hst-{run}", labelled.hid),
                                                "village_code": VILLAGE}).case_id
        opened_before(store, dt.date(2025, 1, 1), case_id)  # STEPS are dated from 2025-01-01
    finally:
        store.close()

    monitor, port = world.monitor(f"hst-{run}", "monitor")
    try:
        wait_until(port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=90, child=monitor,
                   what="the monitor to be ready")
        buyer = labelled.members[1]
        assert not _purchase_alerted(world, monitor, port, prefix, buyer, dt.date(2025, 2, 1), tmp_path)  # 未纳入

        # 1. roster, then the LABEL's status through the outbox and the relay
        statuses_read = metric(scrape(port), "povwatch_events_consumed_total", topic=REGISTRY_HOUSEHOLD_STATUS)
        for step, user, day in STEPS:
            extra = ["--authorised"] if step == "APPLY" else []
            world.cli("case", "advance", str(case_id), step, "--by", user, "--on", day, *extra,
                      "--password-file", str(secret))
        assert "published 1" in world.cli("relay", "--once")
        [status] = _records(broker, REGISTRY_HOUSEHOLD_STATUS, labelled.hid)
        assert (status["monitoring_status"], status["case_id"], status["step"]) == ("MONITORING", case_id, "LABEL")
        shown = json.dumps(status, ensure_ascii=False, default=str)
        assert "测试" not in shown and all(number not in shown for number in labelled.members)
        # one writer: the roster topic holds the roster's record only
        assert [r["monitoring_status"] for r in _records(broker, REGISTRY_HOUSEHOLDS, labelled.hid)] == [
            "NOT_INCLUDED"]
        _wait_status_read(port, monitor, statuses_read + 1)
        assert _purchase_alerted(world, monitor, port, prefix, buyer, dt.date(2025, 2, 2), tmp_path)

        # 2. the same export loaded again after the LABEL: nothing re-sent, the label stands
        again = world.roster(old_export)
        assert again["households"]["unchanged"] == 2 and again["households"]["changed"] == 0
        assert _purchase_alerted(world, monitor, port, prefix, buyer, dt.date(2025, 2, 3), tmp_path)
        # ... also for the monitor restarted: both tables read again from the beginning, in whatever order
        monitor.stop()
        monitor, port = world.monitor(f"hst-{run}", "monitor-again")
        wait_until(port, lambda s: metric(s, "povwatch_registry_ready") == 1, timeout=90, child=monitor,
                   what="the restarted monitor to be ready")
        assert _purchase_alerted(world, monitor, port, prefix, buyer, dt.date(2025, 2, 4), tmp_path)

        # 3. a newer export that changed the household (风险消除): the later word wins over the label
        labelled.status = "风险消除"
        roster_read = metric(scrape(port), "povwatch_events_consumed_total", topic=REGISTRY_HOUSEHOLDS)
        newer = world.roster(roster_file(tmp_path / "roster-new.csv", [labelled, other]))
        assert newer["households"]["changed"] == 1
        wait_until(port, lambda s: metric(s, "povwatch_events_consumed_total", topic=REGISTRY_HOUSEHOLDS)
                   > roster_read, timeout=60, child=monitor, what="the monitor to read the newer roster record")
        assert _records(broker, REGISTRY_HOUSEHOLDS, labelled.hid)[-1]["monitoring_status"] == "RISK_ELIMINATED"
        assert not _purchase_alerted(world, monitor, port, prefix, buyer, dt.date(2025, 2, 5), tmp_path)

        # `cases publish-status` (after an upgrade) queues the same decision again, published by the relay
        assert world.cli("cases", "publish-status").startswith("1 household status(es) queued")
        assert "published 1" in world.cli("relay", "--once")
        again_status = _records(broker, REGISTRY_HOUSEHOLD_STATUS, labelled.hid)
        assert len(again_status) == 2 and again_status[1] == again_status[0]
    finally:
        world.stop_all()
