"""`POST /cds-services/{id}/feedback`: the client reports what the clinician did with the cards (CDS Hooks 2.0 F1-F7).

The body is checked against the 2.0 feedback shape (400 for a wrong shape), stored idempotently (the same feedback
sent twice is one record) and acknowledged with 200. Feedback for a card the ledger does not know is stored too:
the report counts it apart. Authenticated like the other CDS endpoints (the JWT `aud` is the feedback URL).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from cds_service.errors import InvalidRequest
from cds_service.http.invocation import find_service, read_json_body
from cds_service.metrics import count_feedback
from cds_service.state import state
from cds_service.storage.feedback_store import store_feedback
from cds_service.storage.models import Feedback

bp = Blueprint("feedback", __name__)
log = logging.getLogger("cds_service.feedback")

OUTCOMES = ("accepted", "overridden")
_CODING_COLUMNS = {"system": Feedback.__table__.c.override_system, "code": Feedback.__table__.c.override_code,
                   "display": Feedback.__table__.c.override_display}
_UUID_LENGTH: int = Feedback.__table__.c.card_uuid.type.length


def check_feedback(body: Any) -> list[dict[str, Any]]:
    """The feedback items of a request body, or `InvalidRequest` naming the first item that has a wrong shape.

    Tolerant where real clients differ (F5): `overrideReason.reason` may lack `system` (the public sandbox omits it)
    and may carry a code the service never offered.
    """
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise InvalidRequest("The body must be an object with a non-empty 'feedback' array.")
    items = body["feedback"]
    for index, item in enumerate(items):
        where = f"feedback[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object.")
        if not _is_uuid_sized(item.get("card")):
            raise InvalidRequest(f"{where}.card is required: the uuid of a card this service gave (at most "
                                 f"{_UUID_LENGTH} characters).")
        if item.get("outcome") not in OUTCOMES:
            raise InvalidRequest(f"{where}.outcome must be one of {', '.join(OUTCOMES)}.")
        _check_timestamp(item.get("outcomeTimestamp"), where)
        accepted = item.get("acceptedSuggestions")
        if (item["outcome"] == "accepted" or accepted is not None) and not (
                isinstance(accepted, list) and (accepted or item["outcome"] != "accepted")
                and all(isinstance(s, dict) and _is_uuid_sized(s.get("id")) for s in accepted)):
            raise InvalidRequest(f"{where}.acceptedSuggestions must list the accepted suggestions' ids (objects "
                                 f"with an 'id' of at most {_UUID_LENGTH} characters).")
        if "overrideReason" in item:
            _check_override_reason(item["overrideReason"], where)
    return items


def _is_uuid_sized(value: Any) -> bool:
    """A card or suggestion id as the ledger keys it: a non-empty string that fits its column, without NUL. Longer
    is no id this service issued, and cutting it to fit could make two ids one."""
    return isinstance(value, str) and 0 < len(value) <= _UUID_LENGTH and "\x00" not in value


def _check_timestamp(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}.outcomeTimestamp is required (an RFC 3339 date-time).")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{where}.outcomeTimestamp is not an RFC 3339 date-time.") from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"{where}.outcomeTimestamp must carry a time zone (e.g. 'Z').")


def _check_override_reason(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}.overrideReason must be an object.")
    reason, comment = value.get("reason"), value.get("userComment")
    if reason is None and comment is None:
        raise InvalidRequest(f"{where}.overrideReason needs a reason or a userComment.")
    if reason is not None and not (isinstance(reason, dict) and isinstance(reason.get("code"), str)):
        raise InvalidRequest(f"{where}.overrideReason.reason must be a Coding with a code.")
    if reason is not None:
        for name in ("system", "code", "display"):
            _check_coding_text(reason.get(name), f"{where}.overrideReason.reason.{name}", _CODING_COLUMNS[name])
    if comment is not None and not isinstance(comment, str):
        raise InvalidRequest(f"{where}.overrideReason.userComment must be a string.")


def _check_coding_text(value: Any, where: str, column: Any) -> None:
    """A Coding's text field: a string without NUL within what the ledger stores (a display is cut to it, not
    refused: it is for people)."""
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string.")
    if "\x00" in value:
        raise InvalidRequest(f"{where} must not contain NUL characters.")
    if not where.endswith("display") and len(value) > column.type.length:
        raise InvalidRequest(f"{where} is longer than {column.type.length} characters.")


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    find_service(service_id)
    service_id = g.service_id  # a deprecated id's feedback is stored under the current id, as its cards are
    items = check_feedback(read_json_body())
    stored = store_feedback(state(current_app).database, service_id, items, datetime.now(UTC))
    for card_type, outcome in stored:
        count_feedback(card_type, outcome)
    log.info("feedback stored", extra={"request_id": g.request_id, "service": service_id, "items": len(items),
                                       "new": len(stored)})
    return jsonify({"received": len(items), "stored": len(stored)})
