"""How alerts look to people: one line of text for a case worker, or JSON for another program."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["jsonable", "alert_json", "alert_line"]


def jsonable(value: Any) -> Any:
    """Avro-decoded values -> JSON values (dates ISO, decimals as strings)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def alert_json(topic: str, record: Mapping[str, Any]) -> str:
    return json.dumps({"topic": topic, **jsonable(dict(record))}, ensure_ascii=False)


def alert_line(topic: str, record: Mapping[str, Any]) -> str:
    subject = (f"户 {record['household_id']} 村 {record['village_code']}" if "household_id" in record
               else f"村 {record['region_code']} ({len(record['household_ids'])} 户)")
    return (f"[{record['severity']:<6}] {record['rule']:<18} {subject} 发生于 {record['occurred_at']:%Y-%m-%d}: "
            f"{record['reason']}  (alert {record['alert_id'][:12]}, "
            f"events {', '.join(e[:12] for e in record['event_ids'])})")
