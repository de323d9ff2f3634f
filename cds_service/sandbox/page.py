"""`/sandbox` (local profile only): try the services on the fixture patients, as an EHR would show the cards.

Pick a fixture patient and a hook (patient-view, or order-select with one of the fixture's draft orders); the page
builds the CDS Hooks request the way a fully prefetching client would, sends it through the service's own HTTP
endpoint, and shows the cards (indicator colour, summary, detail as rendered markdown, suggestions, links, override
reasons), then the raw request and response. Accepting a suggestion or dismissing a card posts real feedback to the
feedback endpoint. Server-rendered, with a few lines of inline JavaScript and no external assets.
"""

from __future__ import annotations

from typing import Any

import markdown
import orjson
from flask import Blueprint, Response, current_app, request
from markupsafe import Markup

from cds_service.fixtures import load_fixtures, order_context
from cds_service.http.answered import CALL_SOURCE
from cds_service.http.pages import html_page
from cds_service.state import state

bp = Blueprint("sandbox", __name__, template_folder="templates")


def _draft_orders(fixture: Any) -> list[str]:
    drafts = fixture.draft_orders or {}
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in drafts.get("entry", [])]


@bp.get("/sandbox")
def sandbox() -> Response:
    fixtures = load_fixtures()
    chosen_name = request.args.get("patient")
    hook = request.args.get("hook", "patient-view")
    order = request.args.get("order") or None
    result: dict[str, Any] | None = None
    chosen = next((f for f in fixtures if f.name == chosen_name), None)
    if chosen is not None:
        result = _call(chosen, hook, order)
    return html_page(
        "sandbox.html", fixtures=fixtures, chosen=chosen, hook=hook, order=order, result=result,
        orders={f.name: _draft_orders(f) for f in fixtures},
    )


def _call(fixture: Any, hook: str, order: str | None) -> dict[str, Any]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    service = next(s for s in state(app).services if s.hook == hook)
    now = state(app).clock()
    try:
        context = order_context(fixture, hook, order, now)
    except LookupError as exc:
        return {"error": str(exc)}
    body = fixture.hook_request(service.prefetch, now, hook=hook, context=context)
    response = app.test_client().post(f"/cds-services/{service.id}", json=body,
                                       environ_overrides={CALL_SOURCE: "sandbox"})
    answer = orjson.loads(response.get_data())
    cards = answer.get("cards", []) if response.status_code == 200 else []
    for card in cards:
        card["detail_html"] = Markup(markdown.markdown(card.get("detail", "")))  # noqa: S704 (our own escaped markdown)
    return {
        "service": service, "status": response.status_code, "cards": cards,
        "request_json": orjson.dumps(body, option=orjson.OPT_INDENT_2).decode(),
        "response_json": orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode(),
    }
