"""`povwatch monitor unmatched`: the events whose person or household did not reach the registry in time.

Read from the monitor's compacted `<app id>.unmatched` topic (key event_id). No personal data: the feed, the
event id, since when it waited and when it was given up on.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from plumbing.settings import Settings
from plumbing.table import render_table
from schemas.codec import default_codec
from schemas.errors import DecodeError
from services.monitor.topics import MonitorTopics

__all__ = ["Unmatched", "list_unmatched", "render_unmatched", "unmatched_json"]


@dataclass(frozen=True)
class Unmatched:
    feed: str  # <dept> <feed>
    event_id: str
    stage: str  # person: person unknown; household: household unknown
    since: str
    expired_at: str


def _feed(topic: str) -> str:
    parts = topic.split(".", 2)
    return f"{parts[1]} {parts[2]}" if len(parts) == 3 and parts[0] == "events" else topic


async def list_unmatched(settings: Settings) -> list[Unmatched]:
    from plumbing.kafka_io import read_compacted

    codec = default_codec()
    found = []
    contents = await read_compacted(settings.bootstrap, MonitorTopics(settings.monitor_app_id).unmatched)
    for value in contents.values():
        try:
            rec = codec.decode(value, "povwatch.monitor.Unmatched").record
        except DecodeError:
            continue  # not ours to judge here; the monitor only writes Unmatched records
        found.append(Unmatched(_feed(rec["topic"]), rec["event_id"], rec["stage"],
                               rec["since"].isoformat(timespec="seconds"),
                               rec["expired_at"].isoformat(timespec="seconds")))
    return sorted(found, key=lambda u: (u.since, u.feed, u.event_id))


def unmatched_json(rows: list[Unmatched]) -> str:
    return json.dumps([asdict(r) for r in rows], ensure_ascii=False)


def render_unmatched(rows: list[Unmatched]) -> str:
    if not rows:
        return "no unmatched events"
    header = ("feed", "event id", "unknown", "waiting since", "given up at")
    body = [(r.feed, r.event_id, r.stage, r.since, r.expired_at) for r in rows]
    return render_table(header, body) + f"\n{len(rows)} unmatched events"
