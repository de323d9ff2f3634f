"""FHIR R4 resources for clinical tests, dated relative to the pinned evaluation instant E.

Every resource a test builds is validated with fhir.resources (R4B) before it is evaluated (`run`), so the tests
exercise the engine with real, valid FHIR — and the engine itself never calls fhir.resources.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from cds_service.clinical import Evaluation, evaluate, load_thresholds, reads_medication
from cds_service.fhir.record import build_record

E = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SYSTEMS = {
    "icd10": "http://hl7.org/fhir/sid/icd-10-cm", "icd9": "http://hl7.org/fhir/sid/icd-9-cm",
    "sct": "http://snomed.info/sct", "loinc": "http://loinc.org", "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "cpt": "http://www.ama-assn.org/go/cpt", "pcs": "http://www.cms.gov/Medicare/Coding/ICD10",
    "hcpcs": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}
_ids = itertools.count(1)


def day(days_ago: float) -> str:
    """The date `days_ago` days before E, as a FHIR date."""
    return (E - timedelta(days=days_ago)).date().isoformat()


def code(system: str, value: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": SYSTEMS.get(system, system), "code": value}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def patient(birth: str = "1965-03-02") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "pat-1", "birthDate": birth}


def procedure(value: str = "63030", system: str = "cpt", days_ago: float | None = 273, status: str = "completed",
              **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "Procedure", "id": f"proc-{next(_ids)}", "status": status,
                "code": code(system, value), "subject": {"reference": "Patient/pat-1"}}
    if days_ago is not None:
        resource["performedDateTime"] = day(days_ago)
    resource.update(extra)
    return resource


def condition(value: str, system: str = "icd10", onset_days_ago: float | None = 120, clinical: str | None = "active",
              verification: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Condition", "id": f"cond-{next(_ids)}", "code": code(system, value),
                                "subject": {"reference": "Patient/pat-1"}}
    if clinical:
        resource["clinicalStatus"] = code("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical)
    if verification:
        resource["verificationStatus"] = code("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                              verification)
    if onset_days_ago is not None:
        resource["onsetDateTime"] = day(onset_days_ago)
    resource.update(extra)
    return resource


def observation(loinc: str, value: float | None = None, unit: str | None = None, days_ago: float = 10,
                status: str = "final", answer: tuple[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": f"obs-{next(_ids)}", "status": status,
                                "code": code("loinc", loinc), "subject": {"reference": "Patient/pat-1"},
                                "effectiveDateTime": day(days_ago)}
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit:
            quantity |= {"unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
        resource["valueQuantity"] = quantity
    if answer is not None:
        resource["valueCodeableConcept"] = code("sct", answer[0], answer[1])
    resource.update(extra)
    return resource


def medication_request(rxnorm: str | None = "1049621", start_days_ago: float = 30, supply_days: float | None = 30,
                       status: str = "active", intent: str = "order", text: str | None = None,
                       **extra: Any) -> dict[str, Any]:
    concept: dict[str, Any] = code("rxnorm", rxnorm) if rxnorm else {}
    if text:
        concept["text"] = text
    resource: dict[str, Any] = {"resourceType": "MedicationRequest", "id": f"mr-{next(_ids)}", "status": status,
                                "intent": intent, "medicationCodeableConcept": concept,
                                "subject": {"reference": "Patient/pat-1"}, "authoredOn": day(start_days_ago)}
    if supply_days is not None:
        resource["dispenseRequest"] = {"expectedSupplyDuration": {
            "value": supply_days, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}}
    resource.update(extra)
    return resource


def imaging_report(value: str, system: str = "cpt", days_ago: float = 30, status: str = "final",
                   **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "DiagnosticReport", "id": f"dr-{next(_ids)}", "status": status,
                "code": code(system, value), "subject": {"reference": "Patient/pat-1"},
                "effectiveDateTime": day(days_ago)}
    resource.update(extra)
    return resource


def service_request(value: str, system: str = "cpt", days_ago: float = 30, status: str = "completed",
                    **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "ServiceRequest", "id": f"sr-{next(_ids)}", "status": status, "intent": "order",
                "code": code(system, value), "subject": {"reference": "Patient/pat-1"}, "authoredOn": day(days_ago)}
    resource.update(extra)
    return resource


def validate(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def run(*resources: dict[str, Any], now: datetime = E, **threshold_overrides: Any) -> Evaluation:
    """Validate each resource with fhir.resources R4B, then evaluate them at `now`."""
    for resource in resources:
        validate(resource)
    record = build_record([patient(), *resources], now, reads_medication=reads_medication)  # as the service does
    return evaluate(record, now, load_thresholds(overrides=threshold_overrides))


def lumbar_fbss(days_post_op: float = 273, **condition_extra: Any) -> list[dict[str, Any]]:
    """A lumbar laminotomy `days_post_op` ago and a current lumbar radiculopathy: the R3 base case."""
    return [procedure("63030", days_ago=days_post_op),
            condition("M54.16", onset_days_ago=min(days_post_op - 1, 60), **condition_extra)]
