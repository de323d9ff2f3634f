"""Feedback records: one per distinct feedback item (the same item sent twice is stored once, F4)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cds_service.storage.models import Feedback


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def feedback_row(service_id: str, item: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    """A row for one checked feedback item, with the key that makes re-sent feedback idempotent."""
    accepted = sorted(s["id"] for s in item.get("acceptedSuggestions") or ())
    reason = (item.get("overrideReason") or {}).get("reason") or {}
    when = _timestamp(item["outcomeTimestamp"])
    identity = [item["card"], item["outcome"], when.isoformat(), accepted, reason.get("system"), reason.get("code")]
    return {
        "dedupe_key": hashlib.sha256(orjson.dumps(identity)).hexdigest(),
        "card_uuid": item["card"][:36],
        "service_id": service_id,
        "outcome": item["outcome"],
        "outcome_timestamp": when,
        "accepted_suggestions": orjson.dumps(accepted).decode(),
        "override_system": reason.get("system"),
        "override_code": reason.get("code"),
        "override_display": reason.get("display"),
        "has_comment": bool((item.get("overrideReason") or {}).get("userComment")),
        "received_at": received_at,
    }


def store_feedback(engine: Engine, service_id: str, items: Iterable[Mapping[str, Any]],
                   received_at: datetime) -> int:
    """Store the items; returns how many were new (duplicates are ignored, not errors)."""
    rows = [feedback_row(service_id, item, received_at) for item in items]
    if not rows:
        return 0
    insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(Feedback).on_conflict_do_nothing(index_elements=["dedupe_key"])
    with engine.begin() as connection:
        result = connection.execute(statement, rows)
    return max(result.rowcount or 0, 0)
