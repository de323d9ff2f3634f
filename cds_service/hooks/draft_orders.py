"""The draft orders of order-select and order-sign: parsed leniently, validated, never silently dropped.

Draft orders are few and small, so each is validated with fhir.resources (R4B). Real clients deviate from FHIR in
known ways — the public CDS Hooks Sandbox sends `reasonCode` as a single object instead of an array — so known
deviations are normalised and recorded, and an order that still fails validation is kept with its problem recorded:
advice about an order must not disappear because the order is slightly malformed. Validation results are remembered
by the order's content, because clients call order-select again on every change of the order form.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from cds_service.errors import InvalidRequest, TooLarge
from cds_service.fhir.record import items_of, medication_code

log = logging.getLogger("cds_service.hooks")

# Fields FHIR defines as arrays that clients have been seen to send as a single object.
_ARRAY_FIELDS = ("reasonCode", "reasonReference", "category", "bodySite", "dosageInstruction",
                 "note", "identifier", "basedOn", "contained")
_EVALUATED = frozenset({"ServiceRequest", "MedicationRequest"})


@dataclass(frozen=True)
class DraftOrder:
    """One draft order: its `Type/id`, the (normalised) resource, and what was wrong with it as sent."""

    reference: str
    resource_type: str
    resource: dict[str, Any]
    deviations: tuple[str, ...] = ()

    @property
    def evaluated(self) -> bool:
        """Whether the order rules read this kind of order (other types are tolerated and ignored, hook note H2)."""
        return self.resource_type in _EVALUATED


_CACHED_CONTENT_BYTES = 16 * 1024


def _validation_problem(resource_type: str, content: bytes) -> str | None:
    """Why the order is not valid FHIR R4 (None when it is). Remembered for orders up to 16 KB (an EHR sends the same
    order shapes again and again), so the cache holds at most 256 x 16 KB whatever the requests carry."""
    if len(content) > _CACHED_CONTENT_BYTES:
        return _validate(resource_type, content)
    return _validate_cached(resource_type, content)


def _validate(resource_type: str, content: bytes) -> str | None:
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return f"{resource_type} is not an R4 resource type"
    try:
        model.model_validate(orjson.loads(content))
    except ValidationError as exc:
        return f"not valid FHIR R4 ({exc.error_count()} problem(s))"
    return None


_validate_cached = lru_cache(maxsize=256)(_validate)


def _normalise(resource: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    fixed = dict(resource)
    deviations = []
    for field in _ARRAY_FIELDS:
        if isinstance(fixed.get(field), dict):
            fixed[field] = [fixed[field]]
            deviations.append(f"{field} sent as an object, not an array")
    return fixed, deviations


def parse_draft_orders(bundle: Mapping[str, Any], max_orders: int = 100) -> list[DraftOrder]:
    """Every resource of the draftOrders Bundle, normalised and validated (problems recorded, nothing dropped); 413
    past `max_orders`, counted before any is validated."""
    orders = []
    entries = bundle.get("entry")
    if entries is not None and not isinstance(entries, list | dict):
        raise InvalidRequest("context.draftOrders.entry must be an array of Bundle entries.")
    if isinstance(entries, list) and len(entries) > max_orders:
        raise TooLarge(f"context.draftOrders carries {len(entries)} orders; this service evaluates at most "
                       f"{max_orders} in one call (CDS_MAX_DRAFT_ORDERS).")
    for index, entry in enumerate(items_of(entries)):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            log.info("draft order entry without a resource", extra={"index": index})
            continue
        fixed, deviations = _normalise(resource)
        rid = fixed.get("id") if isinstance(fixed.get("id"), str) else f"#{index}"
        try:
            content = orjson.dumps(fixed, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # nested past orjson's depth limit (254): no FHIR resource is
            raise InvalidRequest(f"context.draftOrders.entry[{index}].resource is nested too deeply to be a FHIR "
                                 "resource.") from None
        problem = _validation_problem(fixed["resourceType"], content)
        if problem:
            deviations.append(problem)
        if deviations:
            log.info("draft order deviates from FHIR R4", extra={
                "resource_type": fixed["resourceType"], "deviations": deviations})
        orders.append(DraftOrder(f"{fixed['resourceType']}/{rid}", fixed["resourceType"], fixed, tuple(deviations)))
    return orders


def selected(orders: Iterable[DraftOrder], selections: Iterable[str]) -> list[DraftOrder]:
    """The orders the clinician selected (order-select): `selections` are `Type/id` references into draftOrders."""
    wanted = set(selections)
    return [order for order in orders if order.reference in wanted]


def resolve_medication(order: DraftOrder, bundle: Mapping[str, Any]) -> Any:
    """The medication CodeableConcept of a MedicationRequest: inline or a contained Medication (as for records),
    else a Medication elsewhere in the draftOrders Bundle, named by `Medication/id` or its fullUrl."""
    ref = order.resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(target, str) and not target.startswith("#"):
        for entry in items_of(bundle.get("entry")):
            item = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(item, dict) and item.get("resourceType") == "Medication" \
                    and target in (f"Medication/{item.get('id')}", entry.get("fullUrl")) \
                    and isinstance(item.get("code"), dict):
                return item["code"]
    return medication_code(order.resource)
