"""Properties of the engine (hypothesis): invariance to noise, order and erroneous copies; never raising."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.clinical import evaluate, load_thresholds, reads_medication
from cds_service.fhir.record import build_record
from tests.clinical.builders import (
    E,
    code,
    condition,
    imaging_report,
    lumbar_fbss,
    medication_request,
    observation,
    patient,
    procedure,
    validate,
)

THRESHOLDS = load_thresholds()

# Patients that fire several rules, as the base the properties perturb.
BASES = [
    [*lumbar_fbss(273), condition("M51.26", onset_days_ago=100), observation("4548-4", 8.6, "%", days_ago=20)],
    [condition("M54.50", onset_days_ago=200), procedure("97110", days_ago=40), condition("M41.26"),
     condition("Z68.41")],
    [procedure("22612", days_ago=400), condition("M96.1"), condition("M54.16", onset_days_ago=200),
     observation("72514-3", 7, "{score}", days_ago=3), imaging_report("72158", days_ago=250),
     medication_request("1049621", start_days_ago=120, supply_days=120)],
    [*lumbar_fbss(200), condition("G83.4", onset_days_ago=2)],
]

# Resources that no rule reads: other conditions, vitals, drugs and procedures.
UNRELATED = [
    condition("J45.909"), condition("195967001", system="sct"), condition("K21.9", clinical="resolved"),
    observation("8867-4", 72, "/min"), observation("8480-6", 128, "mm[Hg]"),
    medication_request("197361", start_days_ago=200, supply_days=180),   # amlodipine
    procedure("80146002", system="sct", days_ago=1000),                  # appendectomy
    {"resourceType": "Encounter", "id": "enc-1", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
    {"resourceType": "AllergyIntolerance", "id": "al-1", "patient": {"reference": "Patient/pat-1"}},
]


def findings(resources: list[dict[str, Any]]) -> list[tuple]:
    evaluation = evaluate(build_record([patient(), *resources], E), E, THRESHOLDS)
    return [(f.card_type, f.rule, f.region, tuple(s.key for s in f.suggestions)) for f in evaluation.findings]


def _erroneous_copy(resource: dict[str, Any], index: int) -> dict[str, Any] | None:
    copied = copy.deepcopy(resource)
    copied["id"] = f"eie-{index}-{resource.get('id')}"
    kind = copied["resourceType"]
    if kind == "Condition":
        copied["verificationStatus"] = {"coding": [{"code": "entered-in-error"}]}
    elif kind in ("Procedure", "MedicationRequest", "Observation", "DiagnosticReport", "ServiceRequest"):
        copied["status"] = "entered-in-error"
    else:
        return None
    return copied


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), noise=st.lists(st.sampled_from(UNRELATED), max_size=8))
def test_unrelated_resources_never_change_the_findings(base, noise):
    noisy = [dict(r, id=f"noise-{i}") for i, r in enumerate(noise)]
    assert findings([*base, *noisy]) == findings(base)


@settings(max_examples=60)
@given(base=st.sampled_from(BASES), data=st.data())
def test_entry_order_never_changes_the_findings(base, data):
    shuffled = data.draw(st.permutations(base))
    assert findings(list(shuffled)) == findings(base)


@settings(max_examples=60)
@given(base=st.sampled_from(BASES), data=st.data())
def test_entered_in_error_copies_never_change_the_findings(base, data):
    chosen = data.draw(st.lists(st.sampled_from(base), max_size=len(base)))
    copies = [c for i, r in enumerate(chosen) if (c := _erroneous_copy(r, i)) is not None]
    assert findings([*base, *copies]) == findings(base)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=12,
)


def _mutilate(value: Any, draw, depth: int = 0) -> Any:
    """Drop keys, replace values with arbitrary JSON, or recurse into nested objects and arrays."""
    if isinstance(value, list):
        return [_mutilate(item, draw, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    mutated = {}
    for key, item in value.items():
        if key == "resourceType" and depth == 0:
            mutated[key] = item
            continue
        action = draw(st.sampled_from(["keep", "keep", "drop", "garbage", "recurse"]))
        if action == "keep":
            mutated[key] = item
        elif action == "garbage":
            mutated[key] = draw(_JSON)
        elif action == "recurse":
            mutated[key] = _mutilate(item, draw, depth + 1)
    return mutated


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), data=st.data())
def test_evaluation_never_raises_on_missing_or_odd_fields(base, data):
    """Fields missing or of the wrong type make data unknown, never an exception."""
    mutilated = [_mutilate(resource, data.draw) for resource in base]
    evaluation = evaluate(build_record([patient(), *mutilated], E), E, THRESHOLDS)
    assert isinstance(evaluation.findings, tuple)


# Drugs by code and by name only: opioids (VS-19) and other analgesics (VS-20), which the rules read, and others.
MEDICATIONS = [
    medication_request("1049621", start_days_ago=150, supply_days=150),               # oxycodone 5 mg, by code
    medication_request(None, start_days_ago=100, supply_days=100, text="tramadol 50 mg tablet"),
    medication_request(None, start_days_ago=60, supply_days=60, text="ibuprofen 600 mg tablet"),
    medication_request(None, start_days_ago=60, supply_days=60, text="lisinopril 10 mg tablet"),
    medication_request("197361", start_days_ago=200, supply_days=180),                # amlodipine
    {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active", "subject": {"reference": "Patient/pat-1"},
     "medicationCodeableConcept": code("rxnorm", "1049621"), "effectivePeriod": {"start": "2025-01-15"}},
]


def test_the_medications_are_valid_r4():
    for drug in MEDICATIONS:
        validate(drug)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), drugs=st.lists(st.sampled_from(MEDICATIONS), max_size=6), data=st.data())
def test_leaving_out_the_drugs_no_rule_reads_never_changes_the_evaluation(base, drugs, data):
    """The service builds its record with `reads_medication` (a drug that is neither an opioid nor an analgesic is
    left out before its dates are read): the findings, evidence included, are those of the full record, for odd
    fields too."""
    resources = [patient(), *base, *[_mutilate(drug, data.draw) if data.draw(st.booleans()) else drug
                                     for drug in drugs]]
    kept = build_record(resources, E, reads_medication=reads_medication)
    full = build_record(resources, E)
    assert evaluate(kept, E, THRESHOLDS).findings == evaluate(full, E, THRESHOLDS).findings
    assert len(kept.medications) <= len(full.medications)
