"""`POST /cds-services/{id}`: call a CDS service.

The body is read once and decoded once, keeping only what the service reads (cds_service.hooks.wire); the checked
request goes to the service's `advise`, and the cards go out without empty values (G2: the renderer's are built so,
any other is compacted here). Errors are raised as `CdsError`s and answered as OperationOutcomes by
cds_service.http.errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
from flask import Blueprint, Flask, Request, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from cds_service import jsonio
from cds_service.errors import InvalidRequest, UnknownService, UnsupportedMediaType
from cds_service.hooks.request import HookRequest, parse_hook_request
from cds_service.hooks.wire import decode_hook_request
from cds_service.metrics import count_card
from cds_service.render.cards import RenderedCard
from cds_service.services.declaration import CdsServiceDeclaration
from cds_service.services.runtime import Rerun, Runtime
from cds_service.silent import SilentCall, SilentKnowledge, evaluate_silently
from cds_service.state import state
from cds_service.storage.ledger import CALL_SOURCES, IssuedCardRow
from cds_service.storage.models import IssuedCard
from cds_service.storage.storable import storable

bp = Blueprint("invocation", __name__)
_HOOK_INSTANCE = IssuedCard.__table__.c.hook_instance


def find_service(service_id: str, app: Flask | None = None) -> CdsServiceDeclaration:
    """The declared service with this id, or 404."""
    service = state(app).services.get(service_id)
    if service is None:
        raise UnknownService(f"No CDS service with id '{service_id}'. See GET /cds-services for the services.")
    g.service_id = service.id
    return service


def read_json_body(parse: Callable[[bytes], Any] = jsonio.loads) -> Any:
    """The request body parsed as JSON (by `parse`): 415 for a non-JSON media type, 413 over the limit, 400 if
    malformed."""
    current = request._get_current_object()  # one proxy lookup for the reads below, not one each
    mimetype = current.mimetype
    # Any JSON media type is accepted (application/json, application/fhir+json, with or without charset). A missing
    # Content-Type is tolerated; a declared non-JSON type is refused.
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not '{mimetype}'.")
    data = request_body(current, current_app.config["MAX_CONTENT_LENGTH"])
    if not data or data.isspace():
        raise InvalidRequest("The request body is empty; a JSON object is required.")
    try:
        return parse(data)
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc}).") from None


def request_body(current: Request, limit: int | None) -> bytes:
    """The request body's bytes; 413 past `limit` (MAX_CONTENT_LENGTH).

    Read from the WSGI input in one call. werkzeug's `get_data` reads in 64 KiB steps and copies the body about four
    times: for a 100-resource request 0.9M instructions, as much as Flask's whole handling of a `GET /healthz`
    (bench/INSTRUCTIONS.md). It also cut a body of undeclared length (chunked transfer) at the limit and passed the
    truncated body on, to fail as invalid JSON: here such a body is read one byte past the limit, and refused with 413.
    """
    environ = current.environ
    length = current.content_length
    if length is None:
        # No declared length: the server marks a body it ends itself (chunked) with wsgi.input_terminated; without
        # it there is no telling where the body ends, and nothing is read (as werkzeug does).
        if not environ.get("wsgi.input_terminated"):
            return b""
        data = environ["wsgi.input"].read() if limit is None else environ["wsgi.input"].read(limit + 1)
        if limit is not None and len(data) > limit:
            raise RequestEntityTooLarge()
        return data
    if limit is not None and length > limit:
        raise RequestEntityTooLarge()
    return environ["wsgi.input"].read(length) if length else b""


@bp.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    app = current_app._get_current_object()
    context = g._get_current_object()
    service = find_service(service_id, app)
    hook_request = parse_hook_request(read_json_body(decode_hook_request), service.hook)
    if len(hook_request.hook_instance) > _HOOK_INSTANCE.type.length:  # the ledger's column: refused, not cut
        raise InvalidRequest(f"'hookInstance' is longer than {_HOOK_INSTANCE.type.length} characters (a UUID is 36).")
    context.hook = hook_request.hook
    instance = state(app)
    silent = instance.silent
    runtime = Runtime(now=instance.clock(), thresholds=instance.thresholds, renderer=instance.renderer,
                      fhir_client=instance.fhir_client, fetch_policy=instance.fetch_policy,
                      max_draft_orders=instance.settings.max_draft_orders,
                      rerun=Rerun() if silent is not None else None)
    cards = [card if isinstance(card, RenderedCard) else jsonio.compact(card)
             for card in service.advise(hook_request, runtime)]
    context.card_count = len(cards)
    source = call_source(request.environ)
    if cards:
        # Recorded before the response exists: the ledger's spool has the rows before the client has the cards, and
        # a call whose rows can be recorded nowhere is answered 503 (ServiceUnavailable), not with unrecorded cards.
        # The rows are built here and the writer gets only them. Handing it the request to build them later kept every
        # request's decoded prefetch alive for up to a flush interval (most likely the cost is the memory this keeps
        # touching, and the live objects the collector traces), which cost throughput and p99 (bench/DECISIONS.md).
        instance.ledger.record(ledger_rows(
            cards, service.id, hook_request, runtime.now,
            patient_hasher=instance.patient_hasher, knowledge_version=instance.knowledge_version, source=source))
    for card in cards:  # counted once recorded: a call refused for want of a ledger (503) issued no card
        count_card(card["source"]["topic"]["code"])
    response = jsonify({"cards": cards})
    if silent is not None and runtime.rerun is not None and runtime.rerun.evaluate is not None:
        _after_response(response, app, silent, SilentCall(
            rerun=runtime.rerun, runtime=runtime, service_id=service.id, hook=hook_request.hook,
            live_version=instance.knowledge_version, source=source,
            live_card_types=tuple(card["source"]["topic"]["code"] for card in cards),
            rows=lambda silent_cards: ledger_rows(
                silent_cards, service.id, hook_request, runtime.now, patient_hasher=instance.patient_hasher,
                knowledge_version=silent.version, source=source, silent=True)))
    return response


def _after_response(response: Response, app: Flask, knowledge: SilentKnowledge, call: SilentCall) -> None:
    """The silent version's evaluation, once the server has sent the response and closes it."""
    ledger, slot = state(app).ledger, state(app).cpu_slot
    response.call_on_close(lambda: evaluate_silently(call, knowledge, ledger, slot))


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
        hook=hook_request.hook, hook_instance=storable(hook_request.hook_instance, _HOOK_INSTANCE),
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
