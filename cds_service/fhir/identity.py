"""Whose data: every resource the rules read must belong to the hook's context patient.

The CDS Hooks specification leaves checking prefetched data to the service. An EHR that fills a prefetch template
wrongly, a FHIR server whose search ignores the `patient` parameter, or a Bundle that carries `_include`d resources can
hand the service another patient's Conditions; evaluated as this patient's, they put a red-flag card in the wrong
chart. So the patient-data stage (cds_service.services.patient_data) sorts resources here before any is read:

- a **Patient** resource must have the context patient's id: any other Patient (or one without an id) is a mismatch
  of the whole request, answered 412 by the caller, because nothing else in it can then be trusted either;
- any other resource is **foreign** when its `subject` or `patient` names another Patient (relative, absolute or
  versioned reference) or something that is not a Patient (a Group, a Device): it is dropped and counted;
- a resource whose `subject`/`patient` has no literal reference (absent, identifier-only, `#contained`, `urn:`) is
  kept: it came from a search for this patient and names no other one. Dropping it would lose data, possibly a red
  flag, on a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_REFERENCE_FIELDS = ("subject", "patient")


def referenced_patient(reference: str) -> str | None:
    """The Patient id a literal reference names (`Patient/1`, `https://ehr/fhir/Patient/1`, `Patient/1/_history/2`),
    `""` when it names a resource of another type, None when it is not a literal `Type/id` reference at all."""
    if reference.startswith(("#", "urn:")):
        return None
    parts = reference.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        return None
    return parts[-1] if parts[-2] == "Patient" else ""


def is_foreign(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether a (non-Patient) resource's subject or patient names anyone or anything but the context patient."""
    for name in _REFERENCE_FIELDS:
        value = resource.get(name)
        if not isinstance(value, dict):
            continue
        reference = value.get("reference")
        if not isinstance(reference, str):
            continue
        named = referenced_patient(reference.strip())
        if named is not None and named != patient_id:
            return True
    return False


def patient_mismatch(resources: Iterable[dict[str, Any]], patient_id: str) -> str | None:
    """Why the data is about another patient (a Patient resource whose id is not the context's), or None."""
    for resource in resources:
        if resource.get("resourceType") != "Patient":
            continue
        rid = resource.get("id")
        if not isinstance(rid, str) or not rid:
            return "a Patient resource without an id was sent, so it cannot be shown to be the context patient"
        if rid != patient_id:
            return "a Patient resource whose id is not context.patientId was sent"
    return None


def own_resources(resources: Iterable[dict[str, Any]], patient_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(the resources that may be this patient's, the resource types of those dropped as another's)."""
    kept: list[dict[str, Any]] = []
    dropped: list[str] = []
    for resource in resources:
        if resource.get("resourceType") != "Patient" and is_foreign(resource, patient_id):
            kind = resource.get("resourceType")
            dropped.append(kind if isinstance(kind, str) else "unknown")
        else:
            kept.append(resource)
    return kept, dropped
