"""What order-select and order-sign share: draft orders parsed and classified, the record, rules O1-O5, cards."""

from __future__ import annotations

import logging

from cds_service.clinical import evaluate_orders
from cds_service.clinical.orders import classify
from cds_service.fhir.identity import is_foreign
from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.hooks.draft_orders import parse_draft_orders, resolve_medication, selected
from cds_service.hooks.request import HookRequest
from cds_service.metrics import count_foreign
from cds_service.services.declaration import Card
from cds_service.services.patient_data import patient_record
from cds_service.services.runtime import Runtime

log = logging.getLogger("cds_service.ordering")


def advise_orders(request: HookRequest, runtime: Runtime, *, selected_only: bool) -> list[Card]:
    """Cards about the draft orders: the selected ones (order-select) or all of them (order-sign)."""
    bundle = request.context["draftOrders"]
    drafts = parse_draft_orders(bundle)
    if selected_only:
        drafts = selected(drafts, request.context["selections"])
    foreign = [d.resource_type for d in drafts if is_foreign(d.resource, request.patient_id)]
    if foreign:  # an order for someone else is not advised on as if it were this patient's
        count_foreign(foreign)
        log.warning("draft orders for another patient not evaluated", extra={
            "dropped": len(foreign), "resource_types": sorted(set(foreign))})
        drafts = [d for d in drafts if not is_foreign(d.resource, request.patient_id)]
    items = [classify(d.resource_type, d.resource, d.reference,
                      resolve_medication(d, bundle) if d.resource_type == "MedicationRequest" else None)
             for d in drafts if d.evaluated]
    record = patient_record(request, PATIENT_RECORD, runtime)
    evaluation = evaluate_orders(record, items, runtime.now, runtime.thresholds)
    return runtime.renderer.render(evaluation.findings, now=runtime.now, patient_id=request.patient_id,
                                   unavailable=record.unavailable)
