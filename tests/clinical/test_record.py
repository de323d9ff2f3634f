"""PatientRecord: the validity filters and date rules of clinical-rules §2.2, one ignored resource per filter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cds_service.clinical import reads_medication
from cds_service.fhir.dates import parse_datetime
from cds_service.fhir.record import build_record, resources_in
from tests.clinical.builders import (
    E,
    condition,
    day,
    imaging_report,
    lumbar_fbss,
    medication_request,
    observation,
    patient,
    procedure,
    run,
    service_request,
    validate,
)


def record(*resources):
    for resource in resources:
        validate(resource)
    return build_record([patient(), *resources], E)


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_erroneous_conditions_are_ignored(verification):
    assert record(condition("M54.16", verification=verification)).conditions == ()
    assert run(*lumbar_fbss(273)[:1], condition("M54.16", verification=verification)).card_types == ()


@pytest.mark.parametrize("verification", ["unconfirmed", "provisional", "differential", "confirmed", None])
def test_other_verification_statuses_count(verification):
    assert len(record(condition("M54.16", verification=verification)).conditions) == 1


@pytest.mark.parametrize(("clinical", "current"), [("active", True), ("recurrence", True), ("relapse", True),
                                                   (None, True), ("inactive", False), ("remission", False),
                                                   ("resolved", False)])
def test_current_conditions(clinical, current):
    [entry] = record(condition("M54.16", clinical=clinical)).conditions
    assert entry.current is current


def test_abated_condition_is_not_current():
    [past] = record(condition("M54.16", clinical=None, abatementDateTime=day(5))).conditions
    assert past.current is False
    next_year = E.replace(year=2026).date().isoformat()
    [future] = record(condition("M54.16", clinical=None, abatementDateTime=next_year)).conditions
    assert future.current is True


def test_condition_onset_fallbacks():
    by_period = record(condition("M54.16", onset_days_ago=None, onsetPeriod={"start": day(50)})).conditions[0]
    assert by_period.onset.date().isoformat() == day(50)
    by_age = record(condition("M54.16", onset_days_ago=None, onsetAge={
        "value": 60, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"})).conditions[0]
    assert by_age.onset.year == 2025  # born 1965-03-02
    by_recorded = record(condition("M54.16", onset_days_ago=None, recordedDate=day(70))).conditions[0]
    assert by_recorded.onset.date().isoformat() == day(70)
    unknown = record(condition("M54.16", onset_days_ago=None)).conditions[0]
    assert unknown.onset is None  # never "now"


@pytest.mark.parametrize("status", ["preparation", "in-progress", "not-done", "on-hold", "stopped",
                                    "entered-in-error", "unknown"])
def test_only_completed_procedures_count(status):
    assert record(procedure(status=status)).procedures == ()
    assert run(procedure(status=status), condition("M54.16", onset_days_ago=50)).facts.last_surgery is None


def test_procedure_date_fallbacks():
    period = record(procedure(days_ago=None, performedPeriod={"start": day(300), "end": day(299)})).procedures[0]
    assert period.performed.date().isoformat() == day(299)
    start_only = record(procedure(days_ago=None, performedPeriod={"start": day(300)})).procedures[0]
    assert start_only.performed.date().isoformat() == day(300)
    undated = record(procedure(days_ago=None)).procedures[0]
    assert undated.performed is None


def test_undated_surgery_is_remote_with_unknown_post_op_days():
    evaluation = run(procedure(days_ago=None), condition("M54.16", onset_days_ago=30))
    assert evaluation.facts.post_op_days is None
    assert evaluation.card_types[0] == "fbss-imaging"


@pytest.mark.parametrize("status", ["registered", "cancelled", "entered-in-error", "unknown"])
def test_observations_with_other_statuses_are_ignored(status):
    assert record(observation("4548-4", 9.0, "%", status=status)).observations == ()


def test_observation_with_data_absent_reason_is_ignored():
    obs = observation("39156-5", None, days_ago=5, dataAbsentReason={"text": "not measured"})
    assert record(obs).observations == ()


def test_an_observation_unit_that_is_not_a_string_is_unknown():
    """Invalid FHIR (not validated: `build_record`, as on the request path). The compiled record builder once raised
    on it, refusing a `str | None` unit that was a list (found by the mutilation property test)."""
    obs = observation("39156-5", 36.2, "kg/m2")
    obs["valueQuantity"]["code"] = ["kg/m2"]
    [entry] = build_record([patient(), obs], E).observations
    assert (entry.value, entry.unit) == (36.2, None)


def test_observation_date_fallbacks():
    obs = observation("4548-4", 9.0, "%")
    del obs["effectiveDateTime"]
    obs["issued"] = "2025-05-01T10:00:00Z"
    [entry] = record(obs).observations
    assert entry.effective == datetime(2025, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("status", ["entered-in-error", "draft", "cancelled"])
def test_invalid_medication_requests_are_ignored(status):
    assert record(medication_request(status=status)).medications == ()


def test_medication_request_exposure_and_currency():
    [entry] = record(medication_request(start_days_ago=50, supply_days=None)).medications
    assert (entry.end - entry.start).days == 30  # the 30-day default
    [proposal] = record(medication_request(intent="proposal")).medications
    assert proposal.current is False
    assert proposal.start is None and proposal.end is None  # a suggestion nobody acted on is no exposure
    [stopped] = record(medication_request(status="stopped")).medications
    assert stopped.current is False and stopped.end is not None


@pytest.mark.parametrize("status", ["entered-in-error", "not-taken", "intended"])
def test_invalid_medication_statements_are_ignored(status):
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": status,
                 "medicationCodeableConcept": {"text": "oxycodone"}, "subject": {"reference": "Patient/pat-1"},
                 "effectiveDateTime": day(100)}
    assert record(statement).medications == ()


def test_active_medication_statement_is_exposed_until_now():
    statement = {"resourceType": "MedicationStatement", "id": "ms-2", "status": "active",
                 "medicationCodeableConcept": {"text": "oxycodone"}, "subject": {"reference": "Patient/pat-1"},
                 "effectivePeriod": {"start": day(100)}}
    [entry] = record(statement).medications
    assert entry.current and entry.end == E


def test_contained_medication_is_resolved():
    order = medication_request(None, start_days_ago=120, supply_days=120)
    del order["medicationCodeableConcept"]
    order["contained"] = [{"resourceType": "Medication", "id": "med1", "code": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049621"}]}}]
    order["medicationReference"] = {"reference": "#med1"}
    assert "opioid-long-term" in run(*lumbar_fbss(400), order).card_types


@pytest.mark.parametrize("status", ["draft", "revoked", "entered-in-error", "on-hold"])
def test_service_requests_other_than_active_or_completed_are_ignored(status):
    assert record(service_request("72148", status=status)).service_requests == ()


@pytest.mark.parametrize("status", ["registered", "cancelled", "entered-in-error"])
def test_reports_with_other_statuses_are_ignored(status):
    assert record(imaging_report("72148", status=status)).imaging == ()


def test_imaging_study_must_be_available():
    study = {"resourceType": "ImagingStudy", "id": "is-1", "status": "registered",
             "subject": {"reference": "Patient/pat-1"}, "started": day(10),
             "procedureCode": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72158"}]}]}
    assert record(study).imaging == ()
    study["status"] = "available"
    assert len(record(study).imaging) == 1


def test_bundles_single_resources_null_and_operation_outcomes():
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": condition("M54.16")},
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "processing"}]},
         "search": {"mode": "outcome"}},
        {"fullUrl": "urn:x"}, "junk"]}
    assert [r["resourceType"] for r in resources_in(bundle)] == ["Condition"]
    assert list(resources_in(None)) == []
    assert list(resources_in({"resourceType": "OperationOutcome"})) == []
    assert [r["resourceType"] for r in resources_in(patient())] == ["Patient"]


def test_duplicate_resources_count_once():
    same = condition("M54.16")
    assert len(build_record([same, dict(same)], E).conditions) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("2024", datetime(2024, 1, 1, tzinfo=UTC)), ("2024-09", datetime(2024, 9, 1, tzinfo=UTC)),
    ("2024-09-01", datetime(2024, 9, 1, tzinfo=UTC)),
    ("2024-09-01T10:30:00+02:00", datetime(2024, 9, 1, 8, 30, tzinfo=UTC)),
    ("2024-09-01T10:30:00Z", datetime(2024, 9, 1, 10, 30, tzinfo=UTC)),
    ("yesterday", None), ("", None), (20240901, None), ("2024-13-01", None),
])
def test_fhir_dates(text, expected):
    assert parse_datetime(text) == expected


def test_resources_no_rule_can_read_are_left_out_but_medications_stay():
    built = record(condition("I10"), observation("8867-4", 72, "/min"), procedure("80146002", system="sct"),
                   imaging_report("58410-2", system="loinc"), condition("M54.16"),
                   medication_request(None, text="oxycodone 5 mg tablet"))
    assert [c.code["coding"][0]["code"] for c in built.conditions] == ["M54.16"]
    assert built.observations == () and built.procedures == () and built.imaging == ()
    assert len(built.medications) == 1  # kept for the ingredient-name fallback


def test_with_reads_medication_only_the_drugs_a_rule_reads_are_kept():
    drugs = [medication_request("1049621"), medication_request(None, text="tramadol 50 mg tablet"),
             medication_request(None, text="ibuprofen 600 mg tablet"),
             medication_request(None, text="dihydrocodeine 30 mg tablet"),  # an opioid of VS-19 by its own name
             medication_request(None, text="lisinopril 10 mg tablet"), medication_request("197361"),  # amlodipine
             medication_request(None), medication_request(None, text="atorvastatin 20 mg tablet")]
    for drug in drugs:
        validate(drug)
    built = build_record([patient(), *drugs], E, reads_medication=reads_medication)
    assert [m.reference for m in built.medications] == [f"MedicationRequest/{d['id']}" for d in drugs[:4]]
    assert len(build_record([patient(), *drugs], E).medications) == len(drugs)  # without it, every one is kept


def test_a_panel_is_kept_for_its_known_component():
    panel = observation("91148-7", days_ago=5, component=[
        {"code": {"coding": [{"system": "http://loinc.org", "code": "75893-8"}]}, "valueInteger": 7}])
    assert [o.value for o in record(panel).observations] == [None, 7.0]
