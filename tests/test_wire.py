"""The slim wire decode (cds_service.hooks.wire) gives the service exactly what the full parse gives it.

The decode keeps only RESOURCE_FIELDS of prefetched resources. If a reader of prefetched data used a field not in
that list, records built from the slim decode would differ from records built from `orjson.loads`: these tests build
both, for every fixture and for generated resources with odd values and unknown fields, and compare them.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.generate import patient as bench_patient
from cds_service.clinical import evaluate, load_thresholds
from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.fhir.record import build_record, resources_in
from cds_service.fhir.resolve import client_failed
from cds_service.fixtures import load_fixtures
from cds_service.hooks.wire import RESOURCE_FIELDS, decode_hook_request, decode_slim
from cds_service.sandbox.search import prefetch_for
from cds_service.services.patient_data import this_patients
from tests.clinical.builders import E, code, day, patient
from tests.clinical.test_properties import _JSON, BASES, UNRELATED, _mutilate
from tests.support import assert_operation_outcome, hook_request

THRESHOLDS = load_thresholds()
FIXTURES = load_fixtures()


def _record(body: dict):
    """The record as the patient-data stage builds it: the context patient's resources only."""
    resources = [r for key in PATIENT_RECORD for r in resources_in((body.get("prefetch") or {}).get(key))]
    return build_record(this_patients(resources, body["context"]["patientId"]), E)


def _concept_read(value: Any) -> Any:
    """What any reader takes from a CodeableConcept: its text and each coding's system, code and display."""
    if not isinstance(value, dict):
        return value
    codings = value.get("coding")
    return (value.get("text"), tuple((c.get("system"), c.get("code"), c.get("display")) if isinstance(c, dict) else c
                                     for c in codings) if isinstance(codings, list) else codings)


def _read(record) -> dict:
    """The record as the rules see it: every compared field of every entry, concepts as their readers read them
    (the slim decode leaves out a concept's unread parts, such as a coding's `version` or extensions)."""
    view: dict[str, Any] = {"birth_date": record.birth_date, "unavailable": record.unavailable}
    for group in ("conditions", "procedures", "observations", "medications", "service_requests", "imaging"):
        view[group] = [tuple(_concept_read(getattr(entry, f.name)) if f.name in ("code", "answer")
                             else getattr(entry, f.name) for f in fields(entry) if f.compare)
                       for entry in getattr(record, group)]
    return view


def _both(request: dict) -> tuple[dict, dict]:
    data = orjson.dumps(request)
    return orjson.loads(data), decode_hook_request(data)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_every_fixture_gives_the_same_record_and_findings(fixture):
    full, slim = _both(fixture.hook_request(PATIENT_RECORD))
    assert slim["context"] == full["context"]  # the context (draft orders included) is kept whole
    assert _read(_record(slim)) == _read(_record(full))
    assert _record(slim).size > 0
    assert evaluate(_record(slim), E, THRESHOLDS).findings == evaluate(_record(full), E, THRESHOLDS).findings


def _kitchen_sink() -> list[dict]:
    """Resources that between them use every element of RESOURCE_FIELDS that the PatientRecord reads."""
    cpt, loinc = "cpt", "loinc"
    period = {"start": day(200), "end": day(150)}
    return [
        patient(),
        {"resourceType": "Condition", "id": "c-onset", "code": code("icd10", "M54.16"), "onsetDateTime": day(100)},
        {"resourceType": "Condition", "id": "c-period", "code": code("icd10", "M54.17"), "onsetPeriod": period},
        {"resourceType": "Condition", "id": "c-age", "code": code("icd10", "M54.5"),
         "onsetAge": {"value": 58, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
         "abatementAge": {"value": 59, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}},
        {"resourceType": "Condition", "id": "c-recorded", "code": code("icd10", "M96.1"), "recordedDate": day(40),
         "clinicalStatus": code("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved")},
        {"resourceType": "Condition", "id": "c-refuted", "code": code("icd10", "G83.4"),
         "verificationStatus": code("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted")},
        {"resourceType": "Condition", "id": "c-abated", "code": code("icd10", "M51.26"),
         "abatementDateTime": day(10)},
        {"resourceType": "Condition", "id": "c-abated-period", "code": code("icd10", "M51.27"),
         "abatementPeriod": {"start": day(20), "end": day(15)}},
        {"resourceType": "Procedure", "id": "p-date", "status": "completed", "code": code(cpt, "63030"),
         "performedDateTime": day(300), "bodySite": [{"text": "L4-L5"}]},
        {"resourceType": "Procedure", "id": "p-period", "status": "completed", "code": code(cpt, "22612"),
         "performedPeriod": period},
        {"resourceType": "Procedure", "id": "p-age", "status": "completed", "code": code(cpt, "63047"),
         "performedAge": {"value": 55, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}},
        {"resourceType": "Observation", "id": "o-a1c", "status": "final", "code": code(loinc, "4548-4"),
         "effectiveDateTime": day(5), "valueQuantity": {"value": 8.6, "unit": "%"}},
        {"resourceType": "Observation", "id": "o-pain", "status": "final", "code": code(loinc, "72514-3"),
         "effectivePeriod": period, "valueInteger": 7},
        {"resourceType": "Observation", "id": "o-smoke", "status": "final", "code": code(loinc, "72166-2"),
         "effectiveInstant": f"{day(3)}T10:00:00Z", "valueCodeableConcept": code("sct", "449868002")},
        {"resourceType": "Observation", "id": "o-bmi", "status": "final", "code": code(loinc, "39156-5"),
         "issued": f"{day(4)}T10:00:00Z", "valueQuantity": {"value": 36, "unit": "kg/m2"}},
        {"resourceType": "Observation", "id": "o-absent", "status": "final", "code": code(loinc, "39156-5"),
         "effectiveDateTime": day(2), "dataAbsentReason": {"text": "not measured"}},
        {"resourceType": "Observation", "id": "o-peg", "status": "final", "code": code(loinc, "91148-7"),
         "effectiveDateTime": day(6),
         "component": [{"code": code(loinc, "75893-8"), "valueInteger": 6}]},
        {"resourceType": "MedicationRequest", "id": "m-coded", "status": "active", "intent": "order",
         "medicationCodeableConcept": code("rxnorm", "1049621"), "authoredOn": day(120),
         "dispenseRequest": {"expectedSupplyDuration": {"value": 120, "unit": "days", "code": "d"}}},
        {"resourceType": "MedicationRequest", "id": "m-contained", "status": "active", "intent": "order",
         "contained": [{"resourceType": "Medication", "id": "med1", "code": code("rxnorm", "1049621")}],
         "medicationReference": {"reference": "#med1"},
         "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": day(80), "end": day(1)}}}}]},
        {"resourceType": "MedicationRequest", "id": "m-plan", "status": "active", "intent": "plan",
         "medicationCodeableConcept": code("rxnorm", "1049621"), "authoredOn": day(30)},
        {"resourceType": "MedicationStatement", "id": "s-period", "status": "active",
         "medicationCodeableConcept": {"text": "oxycodone 5 mg"}, "effectivePeriod": {"start": day(200)}},
        {"resourceType": "MedicationStatement", "id": "s-date", "status": "completed",
         "medicationCodeableConcept": {"text": "ibuprofen"}, "effectiveDateTime": day(50)},
        {"resourceType": "ServiceRequest", "id": "sr-date", "status": "active", "code": code(cpt, "72148"),
         "occurrenceDateTime": day(20)},
        {"resourceType": "ServiceRequest", "id": "sr-period", "status": "completed", "code": code(cpt, "97110"),
         "occurrencePeriod": period},
        {"resourceType": "DiagnosticReport", "id": "dr-1", "status": "final", "code": code(cpt, "72158"),
         "effectiveDateTime": day(250), "conclusion": "Epidural fibrosis at L5"},
        {"resourceType": "ImagingStudy", "id": "is-1", "status": "available", "started": day(90),
         "procedureCode": [code(cpt, "72148")], "description": "MRI lumbar spine",
         "series": [{"bodySite": {"display": "Lumbar spine"}}]},
        # Another patient's resources, named by `subject` and by `patient`: left out of the record.
        {"resourceType": "Condition", "id": "c-other", "code": code("icd10", "G83.4"), "onsetDateTime": day(2),
         "subject": {"reference": "Patient/someone-else"}},
        {"resourceType": "Procedure", "id": "p-other", "status": "completed", "code": code(cpt, "22612"),
         "performedDateTime": day(90), "patient": {"reference": "https://ehr.example/fhir/Patient/someone-else"}},
    ]


def _without(resources: list[dict], name: str) -> list[dict]:
    """The resources without an element (a Patient keeps its id: without one the call is a 412, test_identity)."""
    return [{k: v for k, v in r.items() if k != name or (k == "id" and r["resourceType"] == "Patient")}
            for r in resources]


def test_the_kitchen_sink_gives_the_same_record():
    full, slim = _both(_chart(_kitchen_sink()))
    assert _read(_record(slim)) == _read(_record(full))


@pytest.mark.parametrize("name", [f for f in RESOURCE_FIELDS if f not in ("link", "issue")])
def test_every_listed_element_is_read(name):
    """Each element kept is one a reader uses (the kitchen sink changes without it), so the list says what the
    service reads; `link` and `issue` are read by prefetch resolution (test_backfill, test above)."""
    full = _record(orjson.loads(orjson.dumps(_chart(_kitchen_sink()))))
    assert _record(orjson.loads(orjson.dumps(_chart(_without(_kitchen_sink(), name))))) != full


def _chart(resources: list[dict]) -> dict:
    """A request whose prefetch holds the patient (the first Patient given, else a default one) and the rest."""
    subject = next((r for r in resources if r.get("resourceType") == "Patient"), patient())
    resources = [r for r in resources if r is not subject]
    return hook_request(patient_id="pat-1", prefetch={
        "patient": subject,
        "conditions": {"resourceType": "Bundle", "type": "searchset",
                       "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}})


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), noise=st.lists(st.sampled_from(UNRELATED), max_size=4), data=st.data())
def test_odd_values_and_unknown_fields_give_the_same_record(base, noise, data):
    resources = [_mutilate(dict(r, id=f"r{i}"), data.draw) for i, r in enumerate([*base, *noise])]
    for resource in resources:  # elements the service never reads, of any shape
        resource.update(data.draw(st.dictionaries(st.sampled_from(["text", "meta", "identifier", "note",
                                                                   "encounter", "_status"]), _JSON, max_size=3)))
    full, slim = _both(_chart(resources))
    assert _read(_record(slim)) == _read(_record(full))


def test_unread_elements_are_dropped_and_read_ones_kept():
    resource = {"resourceType": "Condition", "id": "c1", "text": {"div": "<div>PHI</div>"}, "meta": {"v": "1"},
                "code": {"coding": [{"code": "M54.16", "extension": [{"url": "x"}]}]}, "status": ["odd"]}
    _, slim = _both(_chart([resource]))
    kept = slim["prefetch"]["conditions"]["entry"][0]
    assert kept == {"resource": {"resourceType": "Condition", "id": "c1", "status": ["odd"],
                                 "code": {"coding": [{"code": "M54.16"}]}}}


def test_an_operation_outcome_entry_still_reads_as_a_failed_prefetch():
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}}]}
    _, slim = _both(hook_request(prefetch={"conditions": bundle}))
    assert client_failed(slim["prefetch"]["conditions"])


@pytest.mark.parametrize("body", [
    b'{"hook": "patient-view", "prefetch": {"user": "123"}}',           # P9: not a resource
    b'{"hook": "patient-view", "prefetch": {"c": {"entry": "x"}}}',     # entry not an array
    b'{"hook": "patient-view", "prefetch": [1]}',
    b'[1, 2]',
    b'"text"',
])
def test_bodies_of_another_shape_are_parsed_in_full(body):
    assert decode_hook_request(body) == orjson.loads(body)


@pytest.mark.parametrize("body", [b'{"hook": ', b"\xff", b"[" * 2000 + b"]" * 2000,
                                  b'{"prefetch": ' + b"[" * 2000 + b"]" * 2000 + b"}"])
def test_malformed_or_too_deep_json_fails_as_orjson_fails(body):
    with pytest.raises(orjson.JSONDecodeError) as expected:
        orjson.loads(body)
    with pytest.raises(ValueError) as raised:
        decode_hook_request(body)
    assert str(raised.value) == str(expected.value)


def test_a_not_a_resource_prefetch_value_is_still_not_satisfied_over_http(client):
    """P9 through the service: the odd value takes the full-parse path and is treated as not prefetched."""
    body = hook_request()
    body["prefetch"]["conditions"] = "123"
    response = client.post("/cds-services/fbss-miss-advisor", data=orjson.dumps(body),
                           content_type="application/json")
    assert_operation_outcome(response, 412, "conditions")


def test_ehr_shaped_requests_take_the_slim_path():
    """Valid FHIR never falls back to the full parse (which would silently cost the whole saving)."""
    for fixture in FIXTURES:
        decode_slim(orjson.dumps(fixture.hook_request(PATIENT_RECORD)))
    prefetch = prefetch_for(PATIENT_RECORD, {"patientId": "bench-1"}, bench_patient(300))
    decode_slim(orjson.dumps(hook_request(patient_id="bench-1", prefetch=prefetch)))
    decode_slim(orjson.dumps(_chart(_kitchen_sink())))
