"""What order-select and order-sign share: draft orders parsed and classified, the record, rules O1-O5, cards."""

from __future__ import annotations

from typing import Any

from cds_service.clinical import evaluate_orders
from cds_service.clinical.orders import classify
from cds_service.fhir.identity import is_foreign
from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.hooks.draft_orders import DraftOrder, parse_draft_orders, resolve_medication, selected
from cds_service.hooks.request import HookRequest
from cds_service.metrics import count_order_evaluation
from cds_service.services.declaration import Card
from cds_service.services.order_reuse import OrderEvaluation
from cds_service.services.patient_data import PatientData, patient_data, report_foreign
from cds_service.services.runtime import Runtime

ORDER_SERVICE_ID = "fbss-miss-orders"
"""One id for the order workflow's hooks (order-select, then order-sign): a client replaces the cards a service gave
at order-select with those it gives at order-sign, instead of showing both."""


def advise_orders(request: HookRequest, runtime: Runtime, *, selected_only: bool) -> list[Card]:
    """Cards about the draft orders: the selected ones (order-select) or all of them (order-sign)."""
    bundle = request.context["draftOrders"]
    drafts = parse_draft_orders(bundle, runtime.max_draft_orders)
    if selected_only:
        drafts = selected(drafts, request.context["selections"])
    # An order for someone else is not advised on as if it were this patient's.
    own: list[DraftOrder] = []
    foreign: list[str] = []
    for draft in drafts:
        if is_foreign(draft.resource, request.patient_id):
            foreign.append(draft.resource_type)
        else:
            own.append(draft)
    report_foreign(foreign, "draft orders for another patient not evaluated")
    evaluated = [d for d in own if d.evaluated]
    reuse = runtime.order_evaluations
    key = None if reuse is None else reuse.key(
        caller=runtime.caller, fhir_server=request.fhir_server, patient_id=request.patient_id,
        user_id=request.user_id, now=runtime.now, draft_orders=bundle, evaluated=[d.reference for d in evaluated],
        prefetch=request.prefetch)
    if key is not None and reuse is not None:
        kept = reuse.get(key)
        count_order_evaluation(request.hook, "reused" if kept else "fresh")
        if kept is not None:  # the same inputs were evaluated moments ago (order-select, then order-sign)
            return runtime.renderer.render(kept.findings, now=runtime.now, patient_id=request.patient_id,
                                           app_link=runtime.app_link)
    data = patient_data(request, PATIENT_RECORD, runtime)
    if runtime.rerun is not None:  # a silent knowledge version evaluates the same data after the response
        runtime.rerun.evaluate = lambda other: _cards(request, bundle, evaluated, data, other)[0]
    cards, evaluation = _cards(request, bundle, evaluated, data, runtime)
    if key is not None and reuse is not None and evaluation is not None:
        reuse.put(key, evaluation)
    return cards


def _cards(request: HookRequest, bundle: Any, drafts: list[DraftOrder], data: PatientData,
           runtime: Runtime) -> tuple[list[Card], OrderEvaluation | None]:
    """The orders classified (by the value sets in force), the record built, rules O1-O5, cards; and the findings
    to keep for a later call with the same inputs (None when some data was unavailable: that call tries again)."""
    items = [classify(d.resource_type, d.resource, d.reference,
                      resolve_medication(d, bundle) if d.resource_type == "MedicationRequest" else None)
             for d in drafts]
    record = data.record(runtime)
    evaluation = evaluate_orders(record, items, runtime.now, runtime.thresholds)
    cards = runtime.renderer.render(evaluation.findings, now=runtime.now, patient_id=request.patient_id,
                                    app_link=runtime.app_link,
                                    unavailable=record.unavailable)
    return cards, None if record.unavailable else OrderEvaluation(evaluation.findings)
