"""Synthetic patients of a given size for benchmarks: a realistic mix in which a few resources match the rules and
most do not (hypertension, vitals, common drugs, unrelated procedures and reports). Deterministic for a seed.

Resources are shaped like an EHR's R4 API output (Epic-style), not like minimal test data: `meta`, a generated
narrative, identifiers under the EHR's OIDs, categories, encounter / recorder / performer references with displays,
several codings per concept (the EHR's own code next to ICD-10-CM, SNOMED CT, LOINC or RxNorm), reference ranges and
dosage text. That is about 1.5 to 2 KB per resource, as in the data measured in the performance notes (about 1.9 KB):
the cost of reading a request grows with its bytes, and a benchmark of slim resources would compare the service with
a parse that no real EHR request is as cheap as. Every resource validates with fhir.resources R4B (tests/test_bench.py).
"""

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
UCUM = "http://unitsofmeasure.org"
EHR_OID = "urn:oid:1.2.840.114350.1.13.0.1.7"  # an EHR's own code-system root (synthetic, never matched by a rule)
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"

NOISE_CONDITIONS = [("I10", "Essential (primary) hypertension", "59621000", "Essential hypertension"),
                    ("E78.5", "Hyperlipidemia, unspecified", "55822004", "Hyperlipidemia"),
                    ("J45.909", "Unspecified asthma, uncomplicated", "195967001", "Asthma"),
                    ("K21.9", "Gastro-esophageal reflux disease without esophagitis", "235595009",
                     "Gastroesophageal reflux disease"),
                    ("M17.11", "Unilateral primary osteoarthritis, right knee", "239873007", "Osteoarthritis of knee"),
                    ("F41.1", "Generalized anxiety disorder", "21897009", "Generalized anxiety disorder")]
# Observations the prefetch template asks for (BMI, smoking status, pain scores, HbA1c history), mostly unremarkable.
NOISE_OBSERVATIONS = [("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 21.0, 29.5, "vital-signs"),
                      ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}", 0, 3,
                       "survey"),
                      ("38208-5", "Pain severity - Reported", "{score}", 0, 3, "survey"),
                      ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.2, 6.4, "laboratory")]
NOISE_DRUGS = [("197361", "amlodipine 5 MG Oral Tablet"), ("314076", "lisinopril 10 MG Oral Tablet"),
               ("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
               ("617310", "atorvastatin 20 MG Oral Tablet"), ("310965", "ibuprofen 200 MG Oral Tablet")]
NOISE_PROCEDURES = [(SNOMED, "80146002", "Appendectomy"), (SNOMED, "73761001", "Colonoscopy"),
                    (CPT, "99213", "Office or other outpatient visit, established patient"),
                    (CPT, "93000", "Electrocardiogram, routine, with at least 12 leads")]
NOISE_REPORTS = [("58410-2", "CBC panel - Blood by Automated count"), ("24323-8", "Comprehensive metabolic panel")]


def _day(rng: random.Random, max_days: int, min_days: int = 1) -> str:
    return (ANCHOR - timedelta(days=rng.randint(min_days, max_days))).date().isoformat()


def _instant(day: str) -> str:
    return f"{day}T15:42:07Z"


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _concept(*codings: dict[str, str], text: str | None = None) -> dict[str, Any]:
    return {"coding": list(codings), "text": text or codings[0]["display"]}


def _status_concept(kind: str, code: str) -> dict[str, Any]:
    return _concept({"system": f"{TERMINOLOGY}/{kind}", "version": "4.0.0", "code": code,
                     "display": code.replace("-", " ").capitalize()})


class _Envelope:
    """What an EHR puts around every resource: ids, meta, narrative, identifiers, references with displays."""

    def __init__(self, rng: random.Random, patient_id: str) -> None:
        self.rng = rng
        self.patient_id = patient_id
        self.subject = {"reference": f"Patient/{patient_id}", "display": "Testpatient, Bench"}

    def wrap(self, kind: str, rid: str, summary: str, body: dict[str, Any], day: str) -> dict[str, Any]:
        number = self.rng.randint(10**8, 10**9)
        return {
            "resourceType": kind, "id": rid,
            "meta": {"versionId": str(self.rng.randint(1, 9)), "lastUpdated": _instant(day),
                     "source": "#Ehr" + str(number)[:6]},
            "text": {"status": "generated",
                     "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{kind}</b>: {summary}</p>'
                            f"<p>Recorded {day} for Testpatient, Bench (MRN 204{number % 10000:04d}).</p></div>"},
            "identifier": [{"use": "usual", "system": f"{EHR_OID}.2.{self.rng.randint(100000, 999999)}",
                            "value": str(number)}],
            **body,
        }

    def encounter(self) -> dict[str, str]:
        return {"reference": f"Encounter/enc-{self.rng.randint(1000, 9999)}",
                "identifier": {"use": "usual", "system": f"{EHR_OID}.3.698084.8",
                               "value": str(self.rng.randint(10**7, 10**8))},
                "display": "Office Visit"}

    def practitioner(self) -> dict[str, str]:
        return {"reference": f"Practitioner/pr-{self.rng.randint(100, 999)}", "type": "Practitioner",
                "display": self.rng.choice(["Physician Family Medicine, MD", "Nurse Practitioner, NP",
                                            "Orthopedic Spine, MD"])}


def patient(size: int, seed: int = 1, patient_id: str = "bench-1") -> list[dict[str, Any]]:
    """`size` resources (Patient included): an FBSS picture plus realistic background."""
    rng = random.Random(seed)
    env = _Envelope(rng, patient_id)
    surgery_day = (ANCHOR - timedelta(days=300)).date().isoformat()
    symptom_day = (ANCHOR - timedelta(days=120)).date().isoformat()
    a1c_day = (ANCHOR - timedelta(days=30)).date().isoformat()
    resources: list[dict[str, Any]] = [
        env.wrap("Patient", patient_id, "Testpatient, Bench", {
            "active": True, "name": [{"use": "official", "family": "Testpatient", "given": ["Bench"]}],
            "gender": "male", "birthDate": date(1961, 4, 2).isoformat(),
            "address": [{"use": "home", "line": ["1 Example Street"], "city": "Madison", "state": "WI",
                         "postalCode": "53703", "country": "USA"}],
            "telecom": [{"system": "phone", "value": "608-555-0100", "use": "home"}]}, surgery_day),
        env.wrap("Procedure", "spine-1", "Lumbar laminotomy", {
            "status": "completed", "category": _concept(_coding(SNOMED, "387713003", "Surgical procedure")),
            "code": _concept(_coding(CPT, "63030", "Laminotomy, one interspace, lumbar"),
                             _coding(f"{EHR_OID}.2.696580", "1234", "LAMINOTOMY LUMBAR")),
            "subject": env.subject, "encounter": env.encounter(), "performedDateTime": surgery_day,
            "performer": [{"actor": env.practitioner()}]}, surgery_day),
        env.wrap("Condition", "symptom-1", "Lumbar radiculopathy", {
            "clinicalStatus": _status_concept("condition-clinical", "active"),
            "verificationStatus": _status_concept("condition-ver-status", "confirmed"),
            "category": [_concept(_coding(f"{TERMINOLOGY}/condition-category", "problem-list-item",
                                          "Problem List Item"))],
            "code": _concept(_coding(ICD10, "M54.16", "Radiculopathy, lumbar region"),
                             _coding(f"{EHR_OID}.2.728286", "5311", "Lumbar radiculopathy")),
            "subject": env.subject, "onsetDateTime": symptom_day, "recordedDate": _instant(symptom_day),
            "recorder": env.practitioner()}, symptom_day),
        _observation_resource(env, "a1c-1", ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 0, 0,
                                             "laboratory"), 8.4, a1c_day),
    ]
    makers = (_condition, _observation, _medication_request, _medication_statement, _procedure, _service_request,
              _report)
    weights = (3, 6, 3, 1, 2, 1, 1)
    while len(resources) < size:
        maker = rng.choices(makers, weights)[0]
        resources.append(maker(env, f"r{len(resources)}"))
    return resources[:size]


def _condition(env: _Envelope, rid: str) -> dict[str, Any]:
    icd, icd_display, sct, sct_display = env.rng.choice(NOISE_CONDITIONS)
    day = _day(env.rng, 4000)
    status = env.rng.choice(["active", "resolved", "inactive"])
    body: dict[str, Any] = {
        "clinicalStatus": _status_concept("condition-clinical", status),
        "verificationStatus": _status_concept("condition-ver-status", "confirmed"),
        "category": [_concept(_coding(f"{TERMINOLOGY}/condition-category", "problem-list-item",
                                      "Problem List Item"))],
        "code": _concept(_coding(f"{EHR_OID}.2.728286", str(env.rng.randint(1000, 9999)), sct_display),
                         _coding(ICD10, icd, icd_display), _coding(SNOMED, sct, sct_display)),
        "subject": env.subject, "encounter": env.encounter(), "onsetDateTime": day,
        "recordedDate": _instant(day), "recorder": env.practitioner(),
        "note": [{"text": "Stable on current regimen; reviewed at visit."}]}
    if status != "active":
        body["abatementDateTime"] = _day(env.rng, 60)
    return env.wrap("Condition", rid, sct_display, body, day)


def _observation(env: _Envelope, rid: str) -> dict[str, Any]:
    spec = env.rng.choice(NOISE_OBSERVATIONS)
    value = round(env.rng.uniform(spec[3], spec[4]), 1)
    # Older than the fixed HbA1c above, so every size of patient gets the same cards.
    return _observation_resource(env, rid, spec, value, _day(env.rng, 1000, min_days=45))


def _observation_resource(env: _Envelope, rid: str, spec: tuple, value: float, day: str) -> dict[str, Any]:
    code, display, unit, _, _, category = spec
    body: dict[str, Any] = {
        "status": "final",
        "category": [_concept({"system": f"{TERMINOLOGY}/observation-category", "code": category,
                               "display": category.replace("-", " ").title()})],
        "code": _concept(_coding(LOINC, code, display),
                         _coding(f"{EHR_OID}.2.768282", str(env.rng.randint(1000, 9999)), display.upper()[:40])),
        "subject": env.subject, "encounter": env.encounter(), "effectiveDateTime": _instant(day),
        "issued": _instant(day), "performer": [env.practitioner()],
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
    if category == "laboratory":
        body["interpretation"] = [_concept(_coding(f"{TERMINOLOGY}/v3-ObservationInterpretation", "N", "Normal"))]
        body["referenceRange"] = [{"low": {"value": 4.0, "unit": unit, "system": UCUM, "code": unit},
                                   "high": {"value": 5.6, "unit": unit, "system": UCUM, "code": unit},
                                   "text": "4.0 - 5.6 %"}]
    return env.wrap("Observation", rid, f"{display}: {value} {unit}", body, day)


def _medication(env: _Envelope) -> tuple[str, dict[str, Any]]:
    code, display = env.rng.choice(NOISE_DRUGS)
    return display, _concept(_coding(RXNORM, code, display),
                             _coding(f"{EHR_OID}.2.698288", str(env.rng.randint(10000, 99999)), display.upper()))


def _medication_request(env: _Envelope, rid: str) -> dict[str, Any]:
    display, concept = _medication(env)
    day = _day(env.rng, 900)
    return env.wrap("MedicationRequest", rid, display, {
        "status": env.rng.choice(["active", "completed", "stopped"]), "intent": "order",
        "category": [_concept(_coding(f"{TERMINOLOGY}/medicationrequest-category", "outpatient", "Outpatient"))],
        "medicationCodeableConcept": concept, "subject": env.subject, "encounter": env.encounter(),
        "authoredOn": _instant(day), "requester": env.practitioner(), "recorder": env.practitioner(),
        "courseOfTherapyType": _concept(_coding(f"{TERMINOLOGY}/medicationrequest-course-of-therapy", "continuous",
                                                "Continuous long term therapy")),
        "dosageInstruction": [{"text": "Take 1 tablet by mouth daily.", "patientInstruction": "Take with water.",
                               "timing": {"repeat": {"boundsPeriod": {"start": day}, "frequency": 1, "period": 1,
                                                     "periodUnit": "d"}},
                               "route": _concept(_coding(SNOMED, "26643006", "Oral route")),
                               "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "system": UCUM,
                                                                 "code": "{tbl}"}}]}],
        "dispenseRequest": {"numberOfRepeatsAllowed": 3,
                            "quantity": {"value": 90, "unit": "tablet", "system": UCUM, "code": "{tbl}"},
                            "expectedSupplyDuration": {"value": 90, "unit": "days", "system": UCUM, "code": "d"}}},
        day)


def _medication_statement(env: _Envelope, rid: str) -> dict[str, Any]:
    display, concept = _medication(env)
    day = _day(env.rng, 900)
    return env.wrap("MedicationStatement", rid, display, {
        "status": "completed", "category": _concept(_coding(f"{TERMINOLOGY}/medication-statement-category",
                                                            "community", "Community")),
        "medicationCodeableConcept": concept, "subject": env.subject, "effectivePeriod": {"start": day},
        "dateAsserted": _instant(day), "informationSource": env.practitioner(),
        "dosage": [{"text": "1 tablet daily as needed."}]}, day)


def _procedure(env: _Envelope, rid: str) -> dict[str, Any]:
    system, code, display = env.rng.choice(NOISE_PROCEDURES)
    day = _day(env.rng, 5000)
    return env.wrap("Procedure", rid, display, {
        "status": "completed", "code": _concept(_coding(system, code, display),
                                                _coding(f"{EHR_OID}.2.696580", str(env.rng.randint(1000, 9999)),
                                                        display.upper()[:40])),
        "subject": env.subject, "encounter": env.encounter(), "performedDateTime": day,
        "performer": [{"actor": env.practitioner()}],
        "location": {"reference": "Location/loc-1", "display": "Main Campus Clinic"}}, day)


def _service_request(env: _Envelope, rid: str) -> dict[str, Any]:
    day = _day(env.rng, 700)
    return env.wrap("ServiceRequest", rid, "Hemoglobin A1c", {
        "status": "completed", "intent": "order",
        "category": [_concept(_coding(SNOMED, "108252007", "Laboratory procedure"))],
        "code": _concept(_coding(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
                         _coding(f"{EHR_OID}.2.696580", "LAB1234", "HEMOGLOBIN A1C")),
        "subject": env.subject, "encounter": env.encounter(), "authoredOn": _instant(day),
        "requester": env.practitioner(), "priority": "routine"}, day)


def _report(env: _Envelope, rid: str) -> dict[str, Any]:
    code, display = env.rng.choice(NOISE_REPORTS)
    day = _day(env.rng, 700)
    return env.wrap("DiagnosticReport", rid, display, {
        "status": "final",
        "category": [_concept(_coding(f"{TERMINOLOGY}/v2-0074", "LAB", "Laboratory"))],
        "code": _concept(_coding(LOINC, code, display)), "subject": env.subject, "encounter": env.encounter(),
        "effectiveDateTime": _instant(day), "issued": _instant(day), "performer": [env.practitioner()],
        "result": [{"reference": f"Observation/lab-{env.rng.randint(1000, 9999)}", "display": display}]}, day)
