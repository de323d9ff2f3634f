"""Feedback records: one per distinct feedback item (the same item sent twice is stored once, F4)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cds_service.storage.models import Feedback, IssuedCard
from cds_service.storage.storable import storable, storable_or_none

_COLUMNS = Feedback.__table__.c


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def feedback_row(service_id: str, item: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    """A row for one checked feedback item, with the key that makes re-sent feedback idempotent. Text the client sent
    is made storable first (storage/storable.py), so one odd item cannot make the database refuse the others."""
    accepted = sorted(storable(s["id"], _COLUMNS.card_uuid) for s in item.get("acceptedSuggestions") or ())
    reason = (item.get("overrideReason") or {}).get("reason") or {}
    when = _timestamp(item["outcomeTimestamp"])
    card = storable(item["card"], _COLUMNS.card_uuid)
    system = storable_or_none(reason.get("system"), _COLUMNS.override_system)
    code = storable_or_none(reason.get("code"), _COLUMNS.override_code)
    identity = [card, item["outcome"], when.isoformat(), accepted, system, code]
    return {
        "dedupe_key": hashlib.sha256(orjson.dumps(identity)).hexdigest(),
        "card_uuid": card,
        "service_id": service_id,
        "outcome": item["outcome"],
        "outcome_timestamp": when,
        "accepted_suggestions": orjson.dumps(accepted).decode(),
        "override_system": system,
        "override_code": code,
        "override_display": storable_or_none(reason.get("display"), _COLUMNS.override_display),
        "has_comment": bool((item.get("overrideReason") or {}).get("userComment")),
        "received_at": received_at,
    }


def store_feedback(engine: Engine, service_id: str, items: Iterable[Mapping[str, Any]],
                   received_at: datetime) -> list[tuple[str, str]]:
    """Store the items; returns the card type and outcome of each new one (duplicates are ignored, not errors; a card
    the ledger does not know has the type "unknown")."""
    rows = [feedback_row(service_id, item, received_at) for item in items]
    if not rows:
        return []
    insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(Feedback).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(
        Feedback.card_uuid, Feedback.outcome)
    with engine.begin() as connection:
        new = connection.execute(statement, rows).all()
        uuids = {card_uuid for card_uuid, _ in new}
        types = dict(connection.execute(select(IssuedCard.card_uuid, IssuedCard.card_type)
                                        .where(IssuedCard.card_uuid.in_(uuids))).all()) if uuids else {}
    return [(types.get(card_uuid, "unknown"), outcome) for card_uuid, outcome in new]
