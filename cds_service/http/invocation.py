"""`POST /cds-services/{id}`: call a CDS service.

The body is read once and decoded once, keeping only what the service reads (cds_service.hooks.wire); the checked
request goes to the service's `advise`, and the cards go out without empty values (G2: the renderer's are built so,
any other is compacted here). Errors are raised as `CdsError`s and answered as OperationOutcomes by
cds_service.http.errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Request, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from cds_service import jsonio, tracing
from cds_service.errors import InvalidRequest, UnknownService, UnsupportedMediaType
from cds_service.hooks.request import parse_hook_request
from cds_service.hooks.wire import decode_hook_request
from cds_service.http.answered import HOOK_INSTANCE, AnsweredCall, after_response, call_source, record_cards
from cds_service.metrics import count_deprecated_service_id
from cds_service.render.app_link import APP_PATH, AppLink
from cds_service.render.cards import RenderedCard
from cds_service.services.declaration import CdsServiceDeclaration
from cds_service.services.runtime import Rerun, Runtime
from cds_service.state import state

bp = Blueprint("invocation", __name__)
log = logging.getLogger("cds_service.invocation")


def find_service(service_id: str, app: Flask | None = None) -> Mapping[str, CdsServiceDeclaration]:
    """The declarations answering at this id, by hook, or 404. A deprecated id is answered, and counted."""
    registry = state(app).services
    hooks = registry.hooks(service_id)
    if hooks is None:
        raise UnknownService(f"No CDS service with id '{service_id}'. See GET /cds-services for the services.")
    if registry.is_deprecated(service_id):
        count_deprecated_service_id(service_id)
        log.info("deprecated service id called", extra={"service": service_id,
                                                        "request_id": g.get("request_id")})
    g.service_id = next(iter(hooks.values())).id  # the current id, also for a deprecated one
    return hooks


def for_hook(hooks: Mapping[str, CdsServiceDeclaration], body: Any) -> CdsServiceDeclaration:
    """The declaration answering the request's `hook` (an id may serve several hooks; dispatch is on `hook`). A hook
    this id does not serve is 400, naming the hooks it does."""
    hook = body.get("hook") if isinstance(body, dict) else None
    declaration = hooks.get(hook) if isinstance(hook, str) else None
    if declaration is not None:
        return declaration
    if isinstance(hook, str) and hook:
        served = " and ".join(f"'{name}'" for name in hooks)
        raise InvalidRequest(f"This service answers the {served} hook{'s' if len(hooks) > 1 else ''}, but the "
                             f"request is for '{hook}'.")
    return next(iter(hooks.values()))  # no usable `hook`: the request check says what is wrong with it


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
    hooks = find_service(service_id, app)
    body = read_json_body(decode_hook_request)
    service = for_hook(hooks, body)
    hook_request = parse_hook_request(body, service.hook)
    if len(hook_request.hook_instance) > HOOK_INSTANCE.type.length:  # the ledger's column: refused, not cut
        raise InvalidRequest(f"'hookInstance' is longer than {HOOK_INSTANCE.type.length} characters (a UUID is 36).")
    context.hook = hook_request.hook
    instance = state(app)
    options = instance.verifier.site_options(context.get("client_iss"), context.get("client_tenant"))
    app_url = (instance.settings.public_base_url or request.url_root).rstrip("/") + APP_PATH
    mode = options.app_link if options is not None and options.app_link else instance.settings.app_link
    runtime = Runtime(now=instance.clock(), thresholds=instance.thresholds, renderer=instance.renderer,
                      fhir_client=instance.fhir_client, fetch_policy=instance.fetch_policy,
                      max_draft_orders=instance.settings.max_draft_orders,
                      rerun=Rerun() if instance.silent is not None else None,
                      order_evaluations=instance.order_evaluations,
                      app_link=None if mode == "none" else AppLink(app_url + "launch.html", instance.renderer.catalogue
                                                                   .app_link_label, mode, hook_request.fhir_server),
                      caller=f"{context.get('client_iss', '')}|{context.get('client_tenant', '')}")
    with tracing.span("cds.hook_call", **{"cds.service": service.id, "cds.hook": hook_request.hook}) as current:
        cards = [card if isinstance(card, RenderedCard) else jsonio.compact(card)
                 for card in service.advise(hook_request, runtime)]
        if options is not None:  # what this site is answered with (the trusted-issuers file); red flags always
            cards = options.apply(cards, app_url)
            if runtime.rerun is not None and runtime.rerun.evaluate is not None:
                unfiltered = runtime.rerun.evaluate
                runtime.rerun.evaluate = lambda other: options.apply(unfiltered(other), app_url)
        context.card_count = len(cards)
        call = AnsweredCall(service.id, hook_request, runtime, call_source(request.environ))
        record_cards(instance, call, cards)  # before the response exists: a card answered is a card recorded
        if current is not None:
            current.set_attribute("cds.cards", len(cards))
    response = jsonify({"cards": cards})
    after_response(instance, call, cards, response)
    return response
