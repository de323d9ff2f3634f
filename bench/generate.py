"""Synthetic patients of a given size for benchmarks: a realistic mix in which a few resources match the rules and
most do not (hypertension, vitals, common drugs, unrelated procedures and reports). Deterministic for a seed."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

ANCHOR = datetime(2025, 6, 1, 12, tzinfo=UTC)
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"

NOISE_CONDITIONS = [(ICD10, "I10"), (ICD10, "E78.5"), (ICD10, "J45.909"), (ICD10, "K21.9"), (ICD10, "M17.11"),
                    (ICD10, "F41.1"), (SNOMED, "195967001"), (SNOMED, "44054006")]
NOISE_OBSERVATIONS = [("8867-4", "/min", 60, 95), ("8480-6", "mm[Hg]", 105, 150), ("29463-7", "kg", 55, 120),
                      ("8310-5", "Cel", 36, 38), ("2339-0", "mg/dL", 70, 140)]
NOISE_DRUGS = ["197361", "314076", "860975", "617310", "310965"]
NOISE_PROCEDURES = [(SNOMED, "80146002"), (SNOMED, "73761001"), (CPT, "99213"), (CPT, "93000")]


def _day(rng: random.Random, max_days: int) -> str:
    return (ANCHOR - timedelta(days=rng.randint(1, max_days))).date().isoformat()


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def patient(size: int, seed: int = 1, patient_id: str = "bench-1") -> list[dict[str, Any]]:
    """`size` resources (Patient included): an FBSS picture plus realistic background."""
    rng = random.Random(seed)
    subject = {"reference": f"Patient/{patient_id}"}
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": patient_id, "birthDate": date(1961, 4, 2).isoformat()},
        {"resourceType": "Procedure", "id": "spine-1", "status": "completed", "subject": subject,
         "code": _coded(CPT, "63030"), "performedDateTime": (ANCHOR - timedelta(days=300)).date().isoformat()},
        {"resourceType": "Condition", "id": "symptom-1", "subject": subject, "code": _coded(ICD10, "M54.16"),
         "clinicalStatus": _coded("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
         "onsetDateTime": (ANCHOR - timedelta(days=120)).date().isoformat()},
        {"resourceType": "Observation", "id": "a1c-1", "status": "final", "subject": subject,
         "code": _coded(LOINC, "4548-4"), "valueQuantity": {"value": 8.4, "unit": "%"},
         "effectiveDateTime": (ANCHOR - timedelta(days=30)).date().isoformat()},
    ]
    makers = (_condition, _observation, _medication_request, _medication_statement, _procedure, _service_request,
              _report)
    weights = (3, 6, 3, 1, 2, 1, 1)
    while len(resources) < size:
        maker = rng.choices(makers, weights)[0]
        resources.append(maker(rng, f"r{len(resources)}", subject))
    return resources[:size]


def _condition(rng: random.Random, rid: str, subject: dict) -> dict[str, Any]:
    system, code = rng.choice(NOISE_CONDITIONS)
    return {"resourceType": "Condition", "id": rid, "subject": subject, "code": _coded(system, code),
            "clinicalStatus": _coded("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                     rng.choice(["active", "resolved", "inactive"])),
            "onsetDateTime": _day(rng, 4000)}


def _observation(rng: random.Random, rid: str, subject: dict) -> dict[str, Any]:
    code, unit, low, high = rng.choice(NOISE_OBSERVATIONS)
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": subject,
            "code": _coded(LOINC, code), "valueQuantity": {"value": round(rng.uniform(low, high), 1), "unit": unit},
            "effectiveDateTime": _day(rng, 1000)}


def _medication_request(rng: random.Random, rid: str, subject: dict) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": rng.choice(["active", "completed", "stopped"]),
            "intent": "order", "subject": subject, "medicationCodeableConcept": _coded(RXNORM, rng.choice(NOISE_DRUGS)),
            "authoredOn": _day(rng, 900),
            "dispenseRequest": {"expectedSupplyDuration": {"value": 90, "unit": "days", "code": "d"}}}


def _medication_statement(rng: random.Random, rid: str, subject: dict) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": rid, "status": "completed", "subject": subject,
            "medicationCodeableConcept": _coded(RXNORM, rng.choice(NOISE_DRUGS)),
            "effectivePeriod": {"start": _day(rng, 900)}}


def _procedure(rng: random.Random, rid: str, subject: dict) -> dict[str, Any]:
    system, code = rng.choice(NOISE_PROCEDURES)
    return {"resourceType": "Procedure", "id": rid, "status": "completed", "subject": subject,
            "code": _coded(system, code), "performedDateTime": _day(rng, 5000)}


def _service_request(rng: random.Random, rid: str, subject: dict) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": rid, "status": "completed", "intent": "order", "subject": subject,
            "code": _coded(LOINC, "4548-4"), "authoredOn": _day(rng, 700)}


def _report(rng: random.Random, rid: str, subject: dict) -> dict[str, Any]:
    return {"resourceType": "DiagnosticReport", "id": rid, "status": "final", "subject": subject,
            "code": _coded(LOINC, "58410-2"), "effectiveDateTime": _day(rng, 700)}
