"""Suggestions as draft FHIR ServiceRequests, each validated with fhir.resources (R4B) before it is sent.

Validation costs more than the rest of a card (bench/DECISIONS.md). A suggestion's structure depends only on its
template and the evidence codes, not on the patient, so a validated shape is remembered (keyed by the resource with a
placeholder subject): the first request pays, later ones reuse the result. The patient id itself was checked against
the FHIR id pattern when the request arrived.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds_service.clinical.model import Evidence, Suggestion
from cds_service.ids import time_ordered_uuid
from cds_service.render.catalogue import Catalogue
from cds_service.terminology.valuesets import CANONICAL_URIS

log = logging.getLogger("cds_service.render")
# A delete action's resourceId: `Type/id`, the id as FHIR R4 defines it (CDS Hooks 2.0 Action.resourceId).
_RESOURCE_ID = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")

_REASON_SYSTEMS = ("icd10cm", "icd9cm", "snomed")
_PLACEHOLDER_SUBJECT = {"reference": "Patient/validation-placeholder"}


@lru_cache(maxsize=4096)
def _valid_shape(shape: bytes) -> bool:
    try:
        ServiceRequest.model_validate(orjson.loads(shape))
    except ValidationError as exc:
        log.error("suggestion failed FHIR validation", extra={"errors": exc.error_count()})
        return False
    return True


def validate_service_request(resource: Mapping[str, Any]) -> bool:
    """True when the ServiceRequest is valid FHIR R4 (checked with fhir.resources R4B, remembered by shape)."""
    shape = dict(resource, subject=_PLACEHOLDER_SUBJECT)
    return _valid_shape(orjson.dumps(shape, option=orjson.OPT_SORT_KEYS))


def reason_codes(evidence: Iterable[Evidence]) -> list[dict[str, Any]]:
    """reasonCode from the diagnoses among the evidence (at most three, in order, no duplicates)."""
    reasons, seen = [], set()
    for item in evidence:
        if item.system in _REASON_SYSTEMS and item.code and (item.system, item.code) not in seen:
            seen.add((item.system, item.code))
            coding = {"system": CANONICAL_URIS[item.system], "code": item.code}
            if item.display:
                coding["display"] = item.display
            reasons.append({"coding": [coding]})
        if len(reasons) == 3:
            break
    return reasons


def service_request(suggestion: Suggestion, catalogue: Catalogue, patient_id: str,
                    reasons: list[dict[str, Any]], *, priority: str | None = None,
                    replaces: str | None = None) -> dict[str, Any] | None:
    """The draft ServiceRequest a suggestion creates, or None when its key is not in cards/orders.yaml."""
    template = (catalogue.studies if suggestion.kind == "study" else catalogue.orders).get(suggestion.key)
    if template is None:
        return None
    code = {"coding": template["coding"]} if suggestion.kind == "study" else {"coding": [template["code"]]}
    code["text"] = template["label"].removeprefix("Order ").removeprefix("Refer to ")
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if priority or suggestion.priority:
        resource["priority"] = priority or suggestion.priority
    if reasons:
        resource["reasonCode"] = reasons
    if "performerType" in template:
        resource["performerType"] = template["performerType"]
    if replaces:
        resource["replaces"] = [{"reference": replaces}]
    return resource


def invalid_orders(catalogue: Catalogue) -> list[str]:
    """The study and order keys of cards/orders.yaml whose ServiceRequest would not be valid FHIR R4.

    Run at start-up, so that an invalid order fails the start rather than being dropped from every card that suggests
    it; it also brings in fhir.resources' ServiceRequest model and the models it refers to, which the first request
    of every worker would otherwise import."""
    keys = [(key, "study") for key in catalogue.studies] + [(key, "order") for key in catalogue.orders]
    return [key for key, kind in keys
            if (resource := service_request(Suggestion(key, kind), catalogue, "start-up", [])) is None
            or not validate_service_request(resource)]


def render_suggestion(suggestion: Suggestion, catalogue: Catalogue, descriptions: Mapping[str, str],
                      patient_id: str, reasons: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A CDS Hooks suggestion: `delete` actions for the drafts it replaces or removes (by resourceId), then a
    `create` action for the order it creates; None (logged) if that resource would not be valid FHIR, or a draft it
    would delete cannot be named."""
    if not all(_RESOURCE_ID.match(ref) for ref in suggestion.deletes):
        # A draft without a FHIR id (or with one that is not an id) cannot be named in a delete action: a suggestion
        # that would leave it in place is not the suggestion the rule made, so none is offered; the card still is.
        log.info("suggestion dropped: a draft it would delete has no FHIR id", extra={"suggestion": suggestion.key})
        return None
    description = descriptions.get(suggestion.key)
    actions: list[dict[str, Any]] = [
        {"type": "delete", "description": descriptions.get("remove-draft", "Remove the draft order"), "resourceId": ref}
        for ref in suggestion.deletes]
    if suggestion.kind == "delete":
        label = catalogue.actions["remove-draft"]["label"]
    else:
        own_reasons = [r for r in suggestion.reasons if isinstance(r, dict)] or reasons
        resource = service_request(suggestion, catalogue, patient_id, own_reasons)
        if resource is None or not validate_service_request(resource):
            log.error("suggestion dropped", extra={"suggestion": suggestion.key})
            return None
        label = (catalogue.studies if suggestion.kind == "study" else catalogue.orders)[suggestion.key]["label"]
        actions.append({"type": "create", "description": description or label, "resource": resource})
    rendered: dict[str, Any] = {"label": label, "uuid": time_ordered_uuid(), "actions": actions}
    if suggestion.recommended:
        rendered["isRecommended"] = True
    return rendered
