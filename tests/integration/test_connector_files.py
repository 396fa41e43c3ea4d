"""`povwatch connector run DEPT FEED FILE FILE ...`: a department's several files through one producer with bulk
batching (services.ingest.run_connector_files), on the session broker. Each file is counted as if run alone (read
= published + rejected, rejected = its bad rows), every event and dead letter reaches the topics once, the audit
trail gets one chained record per file, and a file whose header does not fit the feed stops the run before
anything is sent, in one line."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from connectors.catalog import get_feed
from plumbing.kafka_io import ensure_topics, read_since, topic_end_offsets
from schemas.codec import default_codec
from services.audit_trail import read_trail
from services.demo.feeds import write_feed_file
from services.demo.population import generate

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # bench/ is scripts, not a package: the roster's households as it reads them
from pipeline import roster_households  # noqa: E402
from sweep import valid_roster_rows  # noqa: E402

pytestmark = pytest.mark.integration

SPEC = get_feed("civil-affairs", "assistance")


def _cli(broker: str, instance: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POVWATCH_BOOTSTRAP": broker, "POVWATCH_AUDIT_INSTANCE": instance}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_several_files_go_through_one_run_each_counted_and_audited(broker: str, tmp_path: Path) -> None:
    today = dt.date.today()
    demo = generate(tmp_path / "roster", households=200, seed=11, today=today)
    households = roster_households(demo.roster, valid_roster_rows(demo.roster, today))
    run = uuid.uuid4().hex[:8]
    files = [write_feed_file(SPEC, households, tmp_path / f"assistance-{run}-{m:02d}.csv", count=40 + 10 * m,
                             seed=f"files:{m}", today=today, encoding="utf-8") for m in (1, 2, 3)]
    asyncio.run(ensure_topics(broker, 3))
    topics = [SPEC.topic, SPEC.dlq]
    before = asyncio.run(topic_end_offsets(broker, topics))
    instance = f"it-files-{run}"

    done = _cli(broker, instance, "connector", "run", SPEC.department, SPEC.feed, *[str(f.path) for f in files],
                "--json")
    assert done.returncode == 0, done.stderr
    summaries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [s["file"] for s in summaries] == [f.path.name for f in files]
    for summary, made in zip(summaries, files, strict=True):
        assert summary["read"] == made.rows == summary["published"] + summary["rejected"] + summary["duplicates"]
        assert summary["rejected"] == made.bad_rows > 0

    # every event and dead letter on the topics once, by file
    codec = default_codec()
    by_file: dict[str, list[int]] = {f.path.name: [0, 0] for f in files}

    async def tally() -> None:
        async for rec in read_since(broker, topics, before):
            text = rec.value.decode("utf-8", "replace") if rec.topic == SPEC.dlq else ""
            if rec.topic == SPEC.topic:
                origin = str(codec.decode(rec.value).record["source"]["origin"])
                name = next((n for n in by_file if n in origin), None)
                if name:
                    by_file[name][0] += 1
            else:
                name = next((n for n in by_file if n in text), None)
                if name:
                    by_file[name][1] += 1

    asyncio.run(tally())
    assert by_file == {s["file"]: [s["published"], s["rejected"]] for s in summaries}

    # one audit record per file, one chain
    trail = asyncio.run(read_trail(broker))
    mine = [r for _, r in trail.records if r["instance"] == instance]
    assert [r["details"]["origin"] for r in mine] == [f.path.name for f in files]
    assert all(b["prev_hash"] == a["hash"] and b["seq"] == a["seq"] + 1 for a, b in zip(mine, mine[1:]))

    # a file of another feed among them: one line naming it, nothing sent
    other = tmp_path / "not-assistance.csv"
    other.write_text("名称,数量\r\n甲,1\r\n", encoding="utf-8")
    ends = asyncio.run(topic_end_offsets(broker, topics))
    refused = _cli(broker, instance, "connector", "run", SPEC.department, SPEC.feed, str(files[0].path), str(other))
    assert refused.returncode != 0
    assert "not-assistance.csv" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert asyncio.run(topic_end_offsets(broker, topics)) == ends
