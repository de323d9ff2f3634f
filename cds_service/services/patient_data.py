"""From the request's prefetch to a PatientRecord: which data is there, which is missing, and what that means.

A key the client sent as `null` is "no data" (empty, not missing). A key holding an OperationOutcome, or a Bundle
whose entries include an error OperationOutcome, is data the client failed to get. An absent key is data not sent.
Without the patient, conditions or procedures the service cannot advise: 412 Precondition Failed, naming them.
Other missing data is evaluated without, and the cards say what was unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.errors import PreconditionFailed
from cds_service.fhir.record import PatientRecord, build_record, items_of, iter_resources
from cds_service.hooks.request import HookRequest

REQUIRED_KEYS = ("patient", "conditions", "procedures")


def client_failed(value: Any) -> bool:
    """True for an OperationOutcome, or a Bundle carrying an error/fatal OperationOutcome entry (conformance P4)."""
    if not isinstance(value, dict):
        return False
    if value.get("resourceType") == "OperationOutcome":
        return True
    if value.get("resourceType") == "Bundle":
        for entry in items_of(value.get("entry")):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome" and any(
                    isinstance(i, dict) and i.get("severity") in ("error", "fatal")
                    for i in items_of(resource.get("issue"))):
                return True
    return False


def unavailable_keys(templates: Mapping[str, str], prefetch: Mapping[str, Any]) -> list[str]:
    """The template keys whose data the request does not carry (absent, or the client's fetch failed)."""
    return [key for key in templates if key not in prefetch or client_failed(prefetch[key])]


def patient_record(request: HookRequest, templates: Mapping[str, str], now: Any,
                   default_supply_days: int) -> PatientRecord:
    """The record the rules evaluate; 412 when data the service cannot do without is missing."""
    missing = unavailable_keys(templates, request.prefetch)
    required = [key for key in REQUIRED_KEYS if key in missing]
    if required:
        raise PreconditionFailed(
            "Required patient data was neither prefetched nor fetchable: " + ", ".join(required)
            + ". Send it as prefetch (see the service's templates in GET /cds-services), or send fhirServer and "
            "fhirAuthorization."
        )
    resources = (resource for key in templates if key not in missing
                 for resource in iter_resources(request.prefetch.get(key)))
    return build_record(resources, now, unavailable=missing, default_supply_days=default_supply_days)
