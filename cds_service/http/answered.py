"""What becomes of a hook call's cards besides the answer: recorded in the ledger before the response exists (a call
whose cards can be recorded nowhere is answered 503, never with unrecorded cards), counted in the metrics, and, once
the response is sent, evaluated under the silent knowledge version if one is configured. The invocation handler calls
these at its edges and builds none of it itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from flask import Response

from cds_service import tracing
from cds_service.hooks.request import HookRequest
from cds_service.metrics import count_card
from cds_service.services.runtime import Runtime
from cds_service.silent import SilentCall, evaluate_silently
from cds_service.state import ServiceState
from cds_service.storage.ledger import CALL_SOURCES, IssuedCardRow
from cds_service.storage.models import IssuedCard
from cds_service.storage.storable import storable

HOOK_INSTANCE = IssuedCard.__table__.c.hook_instance
"""The ledger's hookInstance column: invoke() refuses a longer value, rows store it as is."""


@dataclass(frozen=True)
class AnsweredCall:
    """One hook call that produced an answer: which service, the checked request, its runtime and who called."""

    service_id: str
    hook_request: HookRequest
    runtime: Runtime
    source: str


def record_cards(instance: ServiceState, call: AnsweredCall, cards: list[dict]) -> None:
    """The cards into the ledger (its spool has them before the client does), then counted: a call refused for want
    of a ledger (503) issued no card.

    The rows are built here and the writer gets only them. Handing it the request to build them later kept every
    request's decoded prefetch alive for up to a flush interval (most likely the cost is the memory this keeps
    touching, and the live objects the collector traces), which cost throughput and p99 (bench/DECISIONS.md)."""
    if cards:
        with tracing.span("ledger.record", **{"cds.rows": len(cards)}):
            instance.ledger.record(ledger_rows(
                cards, call.service_id, call.hook_request, call.runtime.now, patient_hasher=instance.patient_hasher,
                knowledge_version=instance.knowledge_version, source=call.source))
    for card in cards:
        count_card(card["source"]["topic"]["code"])


def after_response(instance: ServiceState, call: AnsweredCall, cards: list[dict], response: Response) -> None:
    """With a silent knowledge version: the same call evaluated under it once the server has sent the response and
    closes it (cds_service/silent.py)."""
    silent, rerun = instance.silent, call.runtime.rerun
    if silent is None or rerun is None or rerun.evaluate is None:
        return
    silent_call = SilentCall(
        rerun=rerun, runtime=call.runtime, service_id=call.service_id, hook=call.hook_request.hook,
        live_version=instance.knowledge_version, source=call.source,
        live_card_types=tuple(card["source"]["topic"]["code"] for card in cards),
        rows=lambda silent_cards: ledger_rows(
            silent_cards, call.service_id, call.hook_request, call.runtime.now,
            patient_hasher=instance.patient_hasher, knowledge_version=silent.version, source=call.source,
            silent=True))
    ledger, slot = instance.ledger, instance.cpu_slot
    response.call_on_close(lambda: evaluate_silently(silent_call, silent, ledger, slot))


CALL_SOURCE = "cds_service.call_source"
"""WSGI environ key the service's own in-process callers (the /sandbox page, `cds-service simulate`) set to say who
called. An environ key, not a header: a client over HTTP cannot set it, so its calls are always `ehr`."""


def call_source(environ: Mapping[str, Any]) -> str:
    source = environ.get(CALL_SOURCE)
    return source if source in CALL_SOURCES else "ehr"


def ledger_rows(cards: list[dict], service_id: str, hook_request: HookRequest, now: datetime, *,
                patient_hasher: Callable[[str], str], knowledge_version: str,
                source: str = "ehr", silent: bool = False) -> list[IssuedCardRow]:
    """What the ledger keeps of each card: ids, type, knowledge version, time; the patient and the user only as keyed
    hashes (the user's under a prefix of its own), and a digest of what the card said, so the report can tell the
    same card shown again from a new one. The client's hookInstance (no longer than its column, checked in `invoke`)
    is made storable (no NUL), so it cannot make the database refuse the row."""
    patient = patient_hasher(hook_request.patient_id)
    user = patient_hasher("user:" + hook_request.user_id)
    return [IssuedCardRow(
        card_uuid=card["uuid"], card_type=card["source"]["topic"]["code"], service_id=service_id,
        hook=hook_request.hook, hook_instance=storable(hook_request.hook_instance, HOOK_INSTANCE),
        knowledge_version=knowledge_version,
        patient_hash=patient, issued_at=now,
        suggestions=tuple((s["uuid"], s["label"]) for s in card.get("suggestions", ())), source=source,
        user_hash=user, content_digest=content_digest(card), silent=silent,
    ) for card in cards]


def content_digest(card: Mapping[str, Any]) -> str:
    """What the clinician read on a card, as a digest: type, summary, detail and the suggestions' labels. Two cards
    with the same digest, for the same user and patient, are the same card shown again. The indicator is left out:
    the warning cap (cards/stack.yaml) may show the same card as info when more cards come with it at signing."""
    content = [card["source"]["topic"]["code"], card["summary"], card.get("detail", ""),
               [s["label"] for s in card.get("suggestions", ())]]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()
