"""Clinical safety at the edges of the value sets (issue 21): patients written from the sources, not from the code.

Each class of the clinical review has the case that must fire, the nearest case that must not, and small variations
(another code of the same family, another region, an order instead of a chart view). Sources: ACR Appropriateness
Criteria Low Back Pain (2021) variants 1-7 and Cervical Neck Pain (2019); the AHCPR Acute Low Back Problems red-flag
table; NICE TA159; NASS SCS coverage policy; the clinical specification's Errata
(cds_service/clinical/clinical-rules.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.clinical import evaluate_orders, load_thresholds, reads_medication
from cds_service.clinical.orders import classify
from cds_service.fhir.record import build_record
from tests.clinical.builders import (
    E,
    code,
    condition,
    day,
    imaging_report,
    lumbar_fbss,
    medication_request,
    observation,
    patient,
    procedure,
    run,
    validate,
)

NEW_LBP = condition("M54.50", onset_days_ago=10)  # new low back pain, 10 days


def keys(finding) -> list[str]:
    return [s.key for s in finding.suggestions]


def draft(value: str = "72148", system: str = "cpt", priority: str = "routine",
          reason: tuple[str, str] | None = None) -> dict[str, Any]:
    order: dict[str, Any] = {"resourceType": "ServiceRequest", "id": "draft-1", "status": "draft", "intent": "order",
                             "priority": priority, "code": code(system, value),
                             "subject": {"reference": "Patient/pat-1"}, "authoredOn": day(0)}
    if reason:
        order["reasonCode"] = [code(reason[1], reason[0])]
    return order


def order_cards(*resources: dict[str, Any], order: dict[str, Any] | None = None,
                birth: str | None = "1965-03-02") -> tuple[str, ...]:
    """The card types order-sign gives for one draft order (every resource validated as R4 first)."""
    order = order or draft()
    for resource in (*resources, order):
        validate(resource)
    person = patient(birth) if birth else {"resourceType": "Patient", "id": "pat-1"}
    record = build_record([person, *resources], E, reads_medication=reads_medication)
    item = classify("ServiceRequest", order, "ServiceRequest/draft-1")
    return evaluate_orders(record, [item], E, load_thresholds()).card_types


# ------------------------------------------------------------------------ 1. O2 reads the order and the patient


@pytest.mark.parametrize("study", ["72148", "72158", "72131"])
def test_early_lumbar_imaging_without_any_indication_is_not_indicated(study):
    """The base case that must fire (ACR LBP variants 1-2): MRI or CT, 60 years old, 10 days of new back pain."""
    assert order_cards(NEW_LBP, order=draft(study)) == ("imaging-not-indicated",)


@pytest.mark.parametrize("priority", ["urgent", "asap", "stat"])
def test_an_urgent_order_is_never_not_indicated(priority):
    assert order_cards(NEW_LBP, order=draft(priority=priority)) == ()


@pytest.mark.parametrize("reason", [("G83.4", "icd10"), ("192970008", "sct"), ("M54.16", "icd10"),
                                    ("M21.371", "icd10"), ("M46.46", "icd10")])
def test_an_order_whose_reason_is_a_red_flag_deficit_or_radiculopathy_is_never_not_indicated(reason):
    """A STAT or routine MRI 'for suspected cauda equina' (or radiculopathy, foot drop, discitis) as the order says."""
    assert order_cards(NEW_LBP, order=draft(reason=reason)) == ()


@pytest.mark.parametrize("risk", [
    condition("R50.9", onset_days_ago=3),           # fever (with injection drug use, say)
    condition("Z79.52", onset_days_ago=700),        # long-term systemic steroids
    condition("B20", onset_days_ago=2000),          # HIV disease
    condition("D84.9", onset_days_ago=900),         # immunodeficiency
    condition("Z94.0", onset_days_ago=900),         # kidney transplant status
    condition("M81.0", onset_days_ago=900),         # osteoporosis
    condition("M80.08XA", onset_days_ago=400),      # old osteoporotic vertebral fracture
    condition("Z85.3", onset_days_ago=3000, clinical=None),  # history of breast cancer
])
def test_infection_cancer_fracture_and_steroid_risks_make_early_imaging_appropriate(risk):
    """ACR LBP variants 6-7: never 'not indicated' (some of these are red flags of their own with a new symptom)."""
    assert "imaging-not-indicated" not in order_cards(NEW_LBP, risk)


@pytest.mark.parametrize(("birth", "fires"), [("1960-06-02", True), ("1960-06-01", False), ("1950-01-01", False),
                                              (None, False)])
def test_patients_65_or_older_or_of_unknown_age_are_never_not_indicated(birth, fires):
    assert (order_cards(NEW_LBP, birth=birth) == ("imaging-not-indicated",)) is fires


def test_onset_is_onset_only_never_the_recorded_date():
    """Chronic back pain entered in the chart 10 days ago is not back pain that began 10 days ago."""
    entered = condition("M54.50", onset_days_ago=None, recordedDate=day(10))
    assert order_cards(entered) == ()


@pytest.mark.parametrize("chronic", [("278860009", "sct"), ("134407002", "sct")])
def test_a_chronic_pain_concept_is_never_new_pain(chronic):
    assert order_cards(condition(chronic[0], system=chronic[1], onset_days_ago=10)) == ()


def test_an_older_lumbar_symptom_without_onset_beside_a_new_one_stops_o2():
    assert order_cards(NEW_LBP, condition("M54.59", onset_days_ago=None)) == ()


def test_a_cervical_order_or_a_thoracic_symptom_is_not_judged_by_the_lumbar_rule():
    assert order_cards(condition("M54.2", onset_days_ago=10), order=draft("72141")) == ()


# ------------------------------------------------------------------------ 4. O3 duplicate reads the protocol


MRI_60_DAYS_AGO = imaging_report("72148", days_ago=60)


def test_the_same_protocol_within_180_days_is_a_duplicate():
    assert order_cards(condition("M54.50", onset_days_ago=300), MRI_60_DAYS_AGO) == ("imaging-duplicate",)


@pytest.mark.parametrize("new", [condition("M54.16", onset_days_ago=10), condition("M48.062", onset_days_ago=20),
                                 condition("M54.17", onset_days_ago=None, recordedDate=day(5))])
def test_a_radiculopathy_or_deficit_that_began_after_the_study_makes_a_repeat_mri_no_duplicate(new):
    assert order_cards(condition("M54.50", onset_days_ago=300), MRI_60_DAYS_AGO, new) == ()


def test_a_finding_older_than_the_study_does_not_stop_o3():
    old = condition("M54.16", onset_days_ago=120)
    assert order_cards(condition("M54.50", onset_days_ago=300), MRI_60_DAYS_AGO, old) == ("imaging-duplicate",)


@pytest.mark.parametrize(("on_file", "ordered"), [("72148", "72158"), ("72158", "72148"), ("72148", "72149")])
def test_a_different_contrast_protocol_is_not_a_duplicate(on_file, ordered):
    cards = order_cards(condition("M54.50", onset_days_ago=300), imaging_report(on_file, days_ago=60),
                        order=draft(ordered))
    assert "imaging-duplicate" not in cards


def test_a_study_of_unspecified_contrast_is_never_the_same_protocol():
    generic = imaging_report("24968-0", system="loinc", days_ago=60)
    assert order_cards(condition("M54.50", onset_days_ago=300), generic) == ()


@pytest.mark.parametrize("overrides", [{"priority": "stat"}, {"reason": ("M54.16", "icd10")}])
def test_an_urgent_order_or_one_for_a_deficit_is_never_a_duplicate(overrides):
    assert order_cards(condition("M54.50", onset_days_ago=300), MRI_60_DAYS_AGO, order=draft(**overrides)) == ()


def test_red_flags_pre_empt_the_duplicate_card():
    cards = order_cards(condition("M54.50", onset_days_ago=300), MRI_60_DAYS_AGO,
                        condition("G95.20", onset_days_ago=2))
    assert cards == ("red-flag",)


# ------------------------------------------------------------------------ 2, 3, 5. the red-flag layer


def flagged(*resources: dict[str, Any]) -> bool:
    return run(*resources).card_types == ("red-flag",)


@pytest.mark.parametrize("deficit", ["G82.21", "G82.22", "G83.12", "G95.20", "G97.61"])
def test_new_cord_or_motor_compromise_days_after_fusion_is_a_red_flag_inside_the_early_window(deficit):
    """Paraplegia 10 days after fusion: the early post-operative window must not silence it."""
    assert flagged(procedure("22612", days_ago=12), condition("M54.16", onset_days_ago=11),
                   condition(deficit, onset_days_ago=3))


@pytest.mark.parametrize("deficit", ["G82.21", "G95.20", "G83.4"])
def test_an_old_deficit_is_a_sequela_not_a_same_day_alert(deficit):
    evaluation = run(*lumbar_fbss(900), condition(deficit, onset_days_ago=700))
    assert "red-flag" not in evaluation.card_types and "fbss-imaging" in evaluation.card_types


def test_a_new_cauda_equina_entry_without_onset_still_alerts():
    assert flagged(NEW_LBP, condition("G83.4", onset_days_ago=None, recordedDate=day(1)))
    assert not flagged(NEW_LBP, condition("G83.4", onset_days_ago=None, recordedDate=day(400)))


@pytest.mark.parametrize("incontinence", ["N39.490", "R32", "N31.9", "K59.2"])
def test_overflow_incontinence_with_saddle_anaesthesia_is_a_red_flag(incontinence):
    saddle = condition("R20.0", onset_days_ago=2)
    assert flagged(NEW_LBP, condition(incontinence, onset_days_ago=2), saddle)
    assert not flagged(NEW_LBP, condition(incontinence, onset_days_ago=2))  # common in older patients alone
    assert not flagged(condition(incontinence, onset_days_ago=2), saddle)   # no spine context


@pytest.mark.parametrize(("fever", "resources", "fires"), [
    ("R50.82", [procedure("63030", days_ago=20)], True),                      # post-operative fever
    ("R50.9", [procedure("63030", days_ago=20)], True),
    ("R50.9", [NEW_LBP], True),                                               # fever with back pain, no surgery
    ("R50.9", [procedure("63030", days_ago=400)], False),                     # remote surgery, no symptom
    ("R50.9", [], False),
])
def test_fever_after_recent_surgery_or_with_back_pain(fever, resources, fires):
    assert flagged(*resources, condition(fever, onset_days_ago=2)) is fires


@pytest.mark.parametrize("infection", ["M46.56", "A18.01", "K68.12", "M46.25", "T84.63XA", "T84.60XA", "T85.734A"])
def test_spinal_and_spine_device_infections_are_red_flags_with_or_without_surgery(infection):
    assert flagged(condition(infection, onset_days_ago=5))


@pytest.mark.parametrize("limb", ["T84.610A", "T84.620A", "T85.730A"])
def test_limb_hardware_and_brain_stimulator_infections_are_not_spine_red_flags(limb):
    assert not flagged(NEW_LBP, condition(limb, onset_days_ago=5))


def test_a_procedure_infection_after_another_operation_is_no_spine_red_flag():
    appendectomy_infection = condition("T81.40XA", onset_days_ago=5)
    assert not flagged(procedure("44950", days_ago=20), appendectomy_infection)
    assert flagged(procedure("63030", days_ago=20), appendectomy_infection)


@pytest.mark.parametrize("fracture", ["S32.010A", "S22.050A", "S12.000A", "M48.56XA", "M80.08XA"])
def test_a_recent_vertebral_fracture_is_a_red_flag(fracture):
    assert flagged(condition(fracture, onset_days_ago=10))
    assert not flagged(condition(fracture, onset_days_ago=400))


@pytest.mark.parametrize(("fracture", "region", "study"), [("S12.000A", "cervical", "mri-cervical-wo-w"),
                                                          ("S22.050A", "thoracic", "mri-thoracic-wo-w"),
                                                          ("S32.010A", "lumbar", "mri-lumbar-wo-w")])
def test_the_red_flag_card_images_the_region_of_the_fracture(fracture, region, study):
    """A cervical fracture in a patient with old low back pain is imaged in the neck, not the lumbar spine."""
    finding = run(condition("M54.50", onset_days_ago=900), condition(fracture, onset_days_ago=5)).finding("red-flag")
    assert finding.region == region and keys(finding)[0] == study


def test_a_fracture_sequela_is_not_a_new_fracture():
    assert not flagged(NEW_LBP, condition("S32.010S", onset_days_ago=10))


def test_a_pathological_fracture_elsewhere_is_a_red_flag_with_back_pain():
    assert flagged(NEW_LBP, condition("M84.58XA", onset_days_ago=20))
    assert not flagged(condition("M84.58XA", onset_days_ago=20))


@pytest.mark.parametrize("risk", ["Z85.3", "C50.911", "Z79.52", "D84.9", "B20", "Z94.0"])
def test_cancer_or_immunosuppression_with_new_back_pain_is_a_red_flag_acr_variant_7(risk):
    assert flagged(NEW_LBP, condition(risk, onset_days_ago=900))
    assert not flagged(condition("M54.50", onset_days_ago=400), condition(risk, onset_days_ago=900))


def test_the_newest_symptom_decides_not_the_oldest():
    """Chronic back pain for years and a new radiculopathy last month, with a cancer history: variant 7."""
    assert flagged(condition("M54.50", onset_days_ago=2000), condition("M54.16", onset_days_ago=30),
                   condition("Z85.3", onset_days_ago=1500))


def test_basal_cell_carcinoma_is_not_a_spine_red_flag():
    evaluation = run(NEW_LBP, condition("C44.311", onset_days_ago=20))
    assert "red-flag" not in evaluation.card_types


def test_known_metastases_with_neck_pain_suggest_a_cervical_mri():
    finding = run(condition("94602001", system="sct", onset_days_ago=300),
                  condition("M54.2", onset_days_ago=600)).finding("red-flag")
    assert finding is not None and finding.region == "cervical" and keys(finding)[0] == "mri-cervical-wo-w"


def test_known_metastases_pre_empt_the_stimulator_and_imaging_cards():
    evaluation = run(procedure("63030", days_ago=400), condition("M96.1", onset_days_ago=300),
                     condition("M54.16", onset_days_ago=300), condition("C79.51", onset_days_ago=200),
                     observation("72514-3", 8, "{score}", days_ago=5), imaging_report("72158", days_ago=200))
    assert evaluation.card_types == ("red-flag",)


# ------------------------------------------------------------------------ 6. region and spurious advice


@pytest.mark.parametrize("myelopathy", [("M47.12", "icd10"), ("202664003", "sct"), ("M50.021", "icd10")])
def test_cervical_myelopathy_gets_a_cervical_mri_even_beside_low_back_pain(myelopathy):
    finding = run(condition(myelopathy[0], system=myelopathy[1], onset_days_ago=60),
                  condition("M54.50", onset_days_ago=300)).finding("neuro-deficit")
    assert finding.region == "cervical"
    assert "mri-cervical-wo" in keys(finding) and "mri-lumbar-wo" not in keys(finding)


def test_lumbar_foot_drop_gets_a_lumbar_mri_beside_neck_pain():
    finding = run(condition("M21.371", onset_days_ago=300), condition("M54.2", onset_days_ago=300)).finding(
        "neuro-deficit")
    assert finding.region == "lumbar" and "mri-lumbar-wo" in keys(finding)


@pytest.mark.parametrize("finding", [("R26.81", "icd10"), ("M62.81", "icd10"), ("26544005", "sct"),
                                     ("22631008", "sct")])
def test_unsteadiness_or_weakness_without_spine_disease_gets_no_spine_card(finding):
    """Vestibular unsteadiness or deconditioning says nothing of the spine."""
    assert run(condition(finding[0], system=finding[1], onset_days_ago=60),
               condition("H81.10", onset_days_ago=60)).card_types == ()
    with_spine = run(condition(finding[0], system=finding[1], onset_days_ago=60),
                     condition("M48.061", onset_days_ago=300))
    assert "neuro-deficit" in with_spine.card_types


# ------------------------------------------------------------------------ 7. conservative care and stimulation


def test_analgesia_from_the_day_of_surgery_is_not_conservative_care():
    """Oxycodone and naproxen in the first six weeks after surgery are the operation's course, not failed care."""
    post_op_drugs = [medication_request("1049621", start_days_ago=200, supply_days=40),
                     medication_request("198014", start_days_ago=200, supply_days=41)]
    evaluation = run(*lumbar_fbss(200), *post_op_drugs)
    assert "fbss-imaging" in evaluation.card_types and "revision-referral" not in evaluation.card_types
    later = run(*lumbar_fbss(200), medication_request("198014", start_days_ago=140, supply_days=60))
    assert "revision-referral" in later.card_types


def test_physical_therapy_in_the_first_six_weeks_is_rehabilitation():
    assert "revision-referral" not in run(*lumbar_fbss(200), procedure("97110", days_ago=180)).card_types
    assert "revision-referral" in run(*lumbar_fbss(200), procedure("97110", days_ago=120)).card_types


@pytest.mark.parametrize(("care", "system"), [("98940", "cpt"), ("98925", "cpt"), ("97810", "cpt"),
                                              ("96158", "cpt"), ("64479", "cpt")])
def test_manipulation_acupuncture_pain_psychology_and_injections_are_conservative_care(care, system):
    evaluation = run(condition("M54.50", onset_days_ago=200), procedure(care, system=system, days_ago=60))
    assert evaluation.card_types == ("chronic-pain-specialist",)


@pytest.mark.parametrize("drug", ["243670", "854873", "198052"])  # aspirin 81 mg, zolpidem, ondansetron
def test_low_dose_aspirin_and_non_analgesics_are_not_conservative_care(drug):
    evaluation = run(condition("M54.50", onset_days_ago=200), medication_request(drug, start_days_ago=150,
                                                                                 supply_days=120))
    assert evaluation.card_types == ()
    naproxen = run(condition("M54.50", onset_days_ago=200), medication_request("198014", start_days_ago=150,
                                                                               supply_days=120))
    assert naproxen.card_types == ("chronic-pain-specialist",)


def scs_case(*extra: dict[str, Any], radicular: str = "M54.16") -> tuple[str, ...]:
    return run(procedure("63030", days_ago=400), condition("M96.1", onset_days_ago=300),
               condition(radicular, onset_days_ago=300), observation("72514-3", 7, "{score}", days_ago=5),
               imaging_report("72158", days_ago=200), *extra).card_types


def test_scs_is_considered_for_radicular_fbss_without_exclusions():
    assert "scs-consider" in scs_case()
    assert "scs-consider" in scs_case(radicular="M54.17")


@pytest.mark.parametrize("exclusion", [
    condition("F11.20", onset_days_ago=300),      # opioid dependence
    condition("F14.10", onset_days_ago=200),      # cocaine abuse
    condition("75544000", system="sct", onset_days_ago=300),
    condition("C50.911", onset_days_ago=200),     # malignancy under way this year
    condition("M96.0", onset_days_ago=200),       # pseudarthrosis: a structural cause for revision first
])
def test_scs_is_not_suggested_with_an_active_use_disorder_malignancy_or_structural_cause(exclusion):
    assert "scs-consider" not in scs_case(exclusion)


@pytest.mark.parametrize("not_exclusion", [condition("F11.21", onset_days_ago=300),   # in remission
                                           condition("F17.210", onset_days_ago=300)])  # smoking: a surgical risk
def test_a_disorder_in_remission_or_tobacco_does_not_exclude_scs(not_exclusion):
    assert "scs-consider" in scs_case(not_exclusion)


def test_an_open_spine_surgeon_referral_excludes_scs():
    referral = {"resourceType": "ServiceRequest", "id": "ref-1", "status": "active", "intent": "order",
                "code": code("sct", "3457005", "Patient referral"), "subject": {"reference": "Patient/pat-1"},
                "authoredOn": day(20),
                "performerType": {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "207XS0117X"}],
                                  "text": "Orthopaedic spine surgery"}}
    assert "scs-consider" not in scs_case(referral)
    assert "scs-consider" in scs_case(dict(referral, status="completed"))


def test_axial_pain_alone_has_no_neuropathic_component_for_scs():
    assert "scs-consider" not in scs_case(radicular="M54.50")
    assert "scs-consider" in scs_case(condition("247398009", system="sct", onset_days_ago=300), radicular="M54.50")


# ------------------------------------------------------------------------ 8. code errors


def test_hardware_removal_does_not_reset_the_post_operative_clock():
    evaluation = run(*lumbar_fbss(300), procedure("0SP004Z", system="pcs", days_ago=20))
    assert evaluation.finding("fbss-imaging").details["post_op_days"] == 300


def test_a_generic_mri_code_is_not_an_mri_without_contrast():
    """O1 (replace a non-contrast MRI after surgery) never fires on 24968-0, whose contrast is not stated."""
    resources = lumbar_fbss(200)
    assert order_cards(*resources, order=draft("72148")) == ("imaging-protocol",)
    assert order_cards(*resources, order=draft("24968-0", system="loinc")) == ()
