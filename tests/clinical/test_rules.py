"""Rules R1-R11: for each, the branch that fires and the nearest branch that must not (clock pinned at E)."""

from __future__ import annotations

import pytest

from tests.clinical.builders import (
    E,
    condition,
    day,
    imaging_report,
    lumbar_fbss,
    medication_request,
    observation,
    procedure,
    run,
    service_request,
)

LOW_BACK_PAIN_OLD = ("M54.50", 400)  # a lumbar symptom that began before the surgery (not new)


def keys(finding) -> list[str]:
    return [s.key for s in finding.suggestions]


# ------------------------------------------------------------------------------------------------ R2 / R3


@pytest.mark.parametrize(("days", "expected"), [(41, ()), (42, ("fbss-imaging",))])
def test_early_post_op_window_is_42_days(days, expected):
    """R2 vs R3: a new radiculopathy after surgery is normal before 6 weeks, an imaging indication from 6 weeks."""
    evaluation = run(procedure("63030", days_ago=days), condition("M54.16", onset_days_ago=days - 5))
    assert evaluation.card_types == expected


@pytest.mark.parametrize(("days", "fires"), [(83, False), (84, True)])
def test_persistent_symptoms_from_12_weeks(days, fires):
    """R3: a symptom that is not new after surgery counts only once 84 days have passed."""
    evaluation = run(procedure("63030", days_ago=days), condition(*LOW_BACK_PAIN_OLD[:1], onset_days_ago=400))
    assert ("fbss-imaging" in evaluation.card_types) is fires


def test_fbss_imaging_cites_surgery_and_suggests_lumbar_studies():
    finding = run(*lumbar_fbss(273)).finding("fbss-imaging")
    assert finding.rule == "R3" and finding.region == "lumbar"
    assert finding.details["post_op_days"] == 273
    surgery = finding.evidence[0]
    assert (surgery.system, surgery.code, surgery.date.date().isoformat()) == ("cpt", "63030", day(273))
    # A laminotomy/discectomy leaves no graft or hardware for CT to show: MRI and radiographs only.
    assert keys(finding) == ["mri-lumbar-wo-w", "xr-lumbar-flex-ext"]
    assert finding.suggestions[0].recommended


@pytest.mark.parametrize(("surgeries", "extra", "ct"), [
    (("22612",), (), True),                       # posterolateral lumbar fusion
    (("63030", "22612"), (), True),               # a fusion earlier in the region: the hardware is still there
    (("22857",), (), True),                       # lumbar disc arthroplasty
    (("63047",), (), False),                      # laminectomy alone
    (("63030",), (procedure("63685", days_ago=500),), True),  # a stimulator generator: MRI may be unsafe
])
def test_ct_is_offered_only_after_instrumentation_or_when_mri_may_be_unsafe(surgeries, extra, ct):
    records = [procedure(code, days_ago=273 + 100 * index) for index, code in enumerate(surgeries)]
    finding = run(*records, *extra, condition("M54.16", onset_days_ago=200)).finding("fbss-imaging")
    assert ("ct-lumbar-wo" in keys(finding)) is ct
    if ct:
        assert next(s for s in finding.suggestions if s.key == "ct-lumbar-wo").optional


def test_cervical_surgery_suggests_cervical_studies_only():
    finding = run(procedure("22551", days_ago=200), condition("M54.12", onset_days_ago=30)).finding("fbss-imaging")
    assert finding.region == "cervical"
    assert keys(finding) == ["mri-cervical-wo", "xr-cervical-flex-ext", "ct-cervical-wo"]


def test_symptom_of_another_region_is_not_a_post_op_symptom():
    """A cervical symptom after a lumbar surgery is a mismatch: no FBSS card."""
    evaluation = run(procedure("63030", days_ago=200), condition("M54.2", onset_days_ago=30))
    assert "fbss-imaging" not in evaluation.card_types


def test_prior_surgery_from_diagnosis_only_has_unknown_date_and_counts_as_remote():
    evaluation = run(condition("M96.1", onset_days_ago=None), condition("M54.16", onset_days_ago=20))
    finding = evaluation.finding("fbss-imaging")
    assert finding is not None and finding.details["post_op_days"] is None
    assert finding.details["surgery_date_known"] is False


def test_pain_score_counts_with_a_spine_body_site():
    """F4 (Errata 5): a pain score says where it hurts through its body site only."""
    lumbar_site = {"bodySite": {"text": "Lumbar spine"}}
    evaluation = run(procedure("63030", days_ago=200), observation("72514-3", 6, "{score}", days_ago=10,
                                                                  **lumbar_site))
    assert evaluation.finding("fbss-imaging").region == "lumbar"
    back = run(procedure("22551", days_ago=200), observation("72514-3", 6, "{score}", days_ago=10,
                                                             bodySite={"text": "Back"}))
    assert back.finding("fbss-imaging").region == "cervical"  # "back" alone: the region of the last surgery
    low = run(procedure("63030", days_ago=200), observation("72514-3", 3, "{score}", days_ago=10, **lumbar_site))
    assert "fbss-imaging" not in low.card_types


@pytest.mark.parametrize("extra", [{}, {"bodySite": {"text": "Left knee"}}])
def test_a_pain_score_without_a_spine_site_or_diagnosis_is_not_spine_evidence(extra):
    """Knee osteoarthritis 7/10 after an old laminotomy is not FBSS: no imaging, revision or stimulator card."""
    evaluation = run(procedure("63030", days_ago=400), condition("M17.11", onset_days_ago=300),
                     observation("72514-3", 7, "{score}", days_ago=10, **extra),
                     medication_request("197807", start_days_ago=200, supply_days=180),
                     imaging_report("72158", days_ago=300))
    assert evaluation.card_types == ()


def test_a_pain_score_without_a_site_counts_beside_a_current_spine_diagnosis():
    evaluation = run(procedure("63030", days_ago=400), condition("M54.16", onset_days_ago=300),
                     condition("M96.1", onset_days_ago=300), observation("72514-3", 7, "{score}", days_ago=10),
                     imaging_report("72158", days_ago=300))
    assert evaluation.facts.latest_pain_value == 7 and "scs-consider" in evaluation.card_types


def test_any_recent_pain_score_of_4_is_a_symptom_but_scs_reads_the_latest():
    """F4 counts any score >= 4 within 90 days; R11 reads the most recent score only."""
    evaluation = run(procedure("63030", days_ago=250), condition("M96.1", onset_days_ago=200),
                     observation("72514-3", 7, "{score}", days_ago=40),
                     observation("72514-3", 3, "{score}", days_ago=2),
                     imaging_report("72158", days_ago=100))
    assert "fbss-imaging" in evaluation.card_types
    assert evaluation.facts.latest_pain_value == 3
    assert "scs-consider" not in evaluation.card_types
    stale = run(procedure("63030", days_ago=250), observation("72514-3", 7, "{score}", days_ago=91))
    assert "fbss-imaging" not in stale.card_types


@pytest.mark.parametrize(("study_days_ago", "suppressed"), [(30, True), (179, True), (181, False), (300, False)])
def test_recent_post_op_mri_is_not_suggested_again(study_days_ago, suppressed):
    """F16: an MRI of the region after the last surgery (273 d ago) and within 180 d is not suggested again."""
    finding = run(*lumbar_fbss(273), imaging_report("72148", days_ago=study_days_ago)).finding("fbss-imaging")
    assert ("mri-lumbar-wo-w" not in keys(finding)) is suppressed
    assert "xr-lumbar-flex-ext" in keys(finding)
    assert bool(finding.omitted) is suppressed


def test_card_still_fires_when_every_study_is_on_file():
    finding = run(*lumbar_fbss(273), imaging_report("72158", days_ago=20), imaging_report("72114", days_ago=20),
                  service_request("72131", days_ago=15)).finding("fbss-imaging")
    assert finding is not None and keys(finding) == []
    assert {ev.code for ev in finding.omitted} == {"72158", "72114", "72131"}


def test_generic_imaging_report_needs_a_region_in_its_text():
    generic = {"coding": [{"system": "http://loinc.org", "code": "18748-4"}], "text": "MRI lumbar spine"}
    with_text = run(*lumbar_fbss(273), imaging_report("18748-4", system="loinc", days_ago=20, code=generic))
    assert "mri-lumbar-wo-w" not in keys(with_text.finding("fbss-imaging"))
    bare = run(*lumbar_fbss(273), imaging_report("18748-4", system="loinc", days_ago=20))
    assert "mri-lumbar-wo-w" in keys(bare.finding("fbss-imaging"))


# ------------------------------------------------------------------------------------------------ R1


def test_cauda_equina_preempts_everything():
    evaluation = run(*lumbar_fbss(273), condition("G83.4", onset_days_ago=2), condition("M46.1"))
    assert evaluation.card_types == ("red-flag",)
    finding = evaluation.finding("red-flag")
    assert keys(finding) == ["mri-lumbar-wo-w", "referral-urgent-spine-surgery"]
    assert all(s.priority == "stat" for s in finding.suggestions)


def test_red_flag_overrides_the_early_post_op_window():
    evaluation = run(procedure("63030", days_ago=10), condition("T81.41XA", onset_days_ago=3))
    assert evaluation.card_types == ("red-flag",)


def test_red_flag_mri_is_suggested_even_when_a_recent_mri_exists():
    evaluation = run(*lumbar_fbss(273), condition("G83.4", onset_days_ago=3), imaging_report("72158", days_ago=5))
    assert "mri-lumbar-wo-w" in keys(evaluation.finding("red-flag"))


@pytest.mark.parametrize(("onset", "fires"), [(30, True), (31, False)])
def test_new_bladder_dysfunction_within_30_days(onset, fires):
    evaluation = run(condition("M54.50", onset_days_ago=200), condition("R33.9", onset_days_ago=onset))
    assert ("red-flag" in evaluation.card_types) is fires


def test_bladder_dysfunction_without_spine_context_is_not_a_red_flag():
    assert run(condition("R33.9", onset_days_ago=5)).card_types == ()


@pytest.mark.parametrize(("post_op", "fires"), [(90, True), (91, False)])
def test_fever_is_a_red_flag_only_within_90_days_of_surgery(post_op, fires):
    evaluation = run(procedure("63030", days_ago=post_op), condition("R50.9", onset_days_ago=5))
    assert ("red-flag" in evaluation.card_types) is fires


@pytest.mark.parametrize(("onset", "red_flag"), [(30, True), (31, False)])
def test_foot_drop_is_a_red_flag_when_new(onset, red_flag):
    evaluation = run(*lumbar_fbss(273), condition("M21.372", onset_days_ago=onset))
    assert ("red-flag" in evaluation.card_types) is red_flag
    if not red_flag:
        assert "neuro-deficit" in evaluation.card_types  # still a neurological deficit (R6)


@pytest.mark.parametrize("symptom_onset", [20, 91, 900])
def test_known_spinal_metastases_with_any_current_spine_symptom(symptom_onset):
    """Errata 1: known spinal metastases with any current spine symptom fire R1, whatever its onset."""
    evaluation = run(condition("C79.51", onset_days_ago=400), condition("M54.50", onset_days_ago=symptom_onset))
    assert evaluation.card_types == ("red-flag",)
    assert run(condition("C79.51", onset_days_ago=400)).card_types == ()  # no spine symptom


def test_spinal_infection_by_snomed_and_prefix_icd():
    assert run(*lumbar_fbss(200), condition("302935008", system="sct")).card_types == ("red-flag",)
    assert run(*lumbar_fbss(200), condition("M46.46")).card_types == ("red-flag",)


def test_resolved_red_flag_condition_does_not_fire():
    evaluation = run(*lumbar_fbss(273), condition("G83.4", clinical="resolved"))
    assert "red-flag" not in evaluation.card_types


# ------------------------------------------------------------------------------------------------ R4


def test_structural_cause_after_surgery_triggers_revision_referral():
    finding = run(*lumbar_fbss(273), condition("M96.0", onset_days_ago=100)).finding("revision-referral")
    assert finding.rule == "R4" and finding.details["causes"] == ("Pseudarthrosis after fusion or arthrodesis",)
    assert keys(finding) == ["referral-spine-surgeon"]


def test_recurrent_herniation_must_start_after_the_surgery():
    after = run(*lumbar_fbss(273), condition("M51.26", onset_days_ago=100))
    assert after.finding("revision-referral").details["causes"] == ("recurrent-herniation",)
    before = run(*lumbar_fbss(273), condition("M51.26", onset_days_ago=400))
    assert "revision-referral" not in before.card_types


def test_adjacent_segment_disease_needs_a_prior_fusion():
    fusion = run(procedure("22612", days_ago=700), condition("M48.062", onset_days_ago=100))
    assert fusion.finding("revision-referral").details["causes"] == ("adjacent-segment",)
    laminotomy = run(procedure("63030", days_ago=700), condition("M48.062", onset_days_ago=100))
    assert "revision-referral" not in laminotomy.card_types


@pytest.mark.parametrize(("pt_days_ago", "fires"), [(100, True), (300, False)])
def test_conservative_care_since_surgery_triggers_revision_referral(pt_days_ago, fires):
    evaluation = run(*lumbar_fbss(273), procedure("91251008", system="sct", days_ago=pt_days_ago))
    assert ("revision-referral" in evaluation.card_types) is fires


def test_revision_referral_never_without_fbss_imaging():
    evaluation = run(procedure("63030", days_ago=273), condition("M96.0", onset_days_ago=100))
    assert evaluation.card_types == ()  # M96.0 is not a symptom: no R3, so no R4


# ------------------------------------------------------------------------------------------------ R5


@pytest.mark.parametrize(("onset", "fires"), [(83, False), (84, True)])
def test_chronic_pain_needs_more_than_12_weeks(onset, fires):
    evaluation = run(condition("M54.50", onset_days_ago=onset), procedure("97110", days_ago=40))
    assert ("chronic-pain-specialist" in evaluation.card_types) is fires


def test_chronic_pain_card_suggests_mri_without_contrast_and_referral():
    finding = run(condition("278860009", system="sct", onset_days_ago=200),
                  procedure("64483", days_ago=60)).finding("chronic-pain-specialist")
    assert keys(finding) == ["mri-lumbar-wo", "referral-spine-specialist"]
    assert finding.details["symptom_weeks"] == 28


def test_chronic_pain_without_documented_conservative_care_gives_no_card():
    assert run(condition("M54.50", onset_days_ago=200)).card_types == ()


def test_chronic_pain_with_unknown_onset_gives_no_card():
    evaluation = run(condition("M54.50", onset_days_ago=None), procedure("97110", days_ago=40))
    assert evaluation.card_types == ()


@pytest.mark.parametrize(("supply", "fires"), [(41, False), (42, True)])
def test_analgesic_exposure_of_42_days_is_conservative_care(supply, fires):
    evaluation = run(condition("M54.50", onset_days_ago=200),
                     medication_request("197807", start_days_ago=100, supply_days=supply, status="completed"))
    assert ("chronic-pain-specialist" in evaluation.card_types) is fires


def test_chronic_pain_card_is_not_given_after_surgery_in_that_region():
    evaluation = run(*lumbar_fbss(273), procedure("97110", days_ago=40))
    assert "chronic-pain-specialist" not in evaluation.card_types


# ------------------------------------------------------------------------------------------------ R6


def test_neuro_deficit_with_fbss():
    evaluation = run(*lumbar_fbss(273), condition("R26.2"))
    finding = evaluation.finding("neuro-deficit")
    assert keys(finding) == ["referral-spine-specialist"]  # imaging is carried by the FBSS card


def test_neuro_deficit_alone_adds_mri_without_contrast():
    finding = run(condition("R26.2"), condition("M54.50", onset_days_ago=20)).finding("neuro-deficit")
    assert keys(finding) == ["referral-spine-specialist", "mri-lumbar-wo"]


def test_supporting_numbness_is_not_a_neuro_deficit():
    assert "neuro-deficit" not in run(*lumbar_fbss(273), condition("R20.2")).card_types


# ------------------------------------------------------------------------------------------------ R7 / F8


@pytest.mark.parametrize(("start", "fires"), [(89, False), (90, True)])
def test_long_term_opioid_from_90_days(start, fires):
    evaluation = run(*lumbar_fbss(400), medication_request("1049621", start_days_ago=start, supply_days=start))
    assert ("opioid-long-term" in evaluation.card_types) is fires


@pytest.mark.parametrize(("second_start", "fires"), [(90, True), (89, False)])
def test_opioid_records_chain_across_gaps_of_at_most_30_days(second_start, fires):
    """First course ends 120 d ago; the current one starts 90 d (gap 30: one chain) or 89 d ago (gap 31: broken)."""
    evaluation = run(*lumbar_fbss(400),
                     medication_request("857002", start_days_ago=150, supply_days=30, status="completed"),
                     medication_request("1049621", start_days_ago=second_start, supply_days=second_start))
    assert ("opioid-long-term" in evaluation.card_types) is fires
    if fires:
        assert evaluation.finding("opioid-long-term").details["days"] == 150


def test_stopped_opioids_without_a_current_order_never_fire():
    evaluation = run(*lumbar_fbss(400), medication_request("1049621", start_days_ago=200, supply_days=190,
                                                            status="stopped"))
    assert "opioid-long-term" not in evaluation.card_types


def test_long_term_opiate_use_diagnosis_counts():
    evaluation = run(*lumbar_fbss(400), condition("Z79.891"))
    assert "opioid-long-term" in evaluation.card_types


def test_opioid_by_ingredient_name_when_uncoded():
    evaluation = run(*lumbar_fbss(400), medication_request(None, start_days_ago=120, supply_days=120,
                                                            text="oxycodone 5 mg tablet"))
    assert "opioid-long-term" in evaluation.card_types


def test_buprenorphine_naloxone_is_treatment_of_opioid_use_disorder_not_opioid_therapy_for_pain():
    """CDC 2022 recommendation 12: medication for opioid use disorder is never advised against."""
    evaluation = run(*lumbar_fbss(400), medication_request("351267", start_days_ago=120, supply_days=120))
    assert "opioid-long-term" not in evaluation.card_types


def test_moud_beside_long_term_analgesic_opioids_is_named_on_the_card():
    finding = run(*lumbar_fbss(400), medication_request("351267", start_days_ago=60, supply_days=60),
                  medication_request("1049621", start_days_ago=120, supply_days=120)).finding("opioid-long-term")
    assert finding.details["oud_treatment"] is True and finding.details["days"] == 120
    assert {ev.code for ev in finding.evidence} == {"1049621"}  # the MOUD record is not cited as pain therapy


@pytest.mark.parametrize(("disorder", "fires"), [(False, True), (True, False)])
def test_methadone_is_moud_only_with_opioid_use_disorder_on_the_problem_list(disorder, fires):
    records = [*lumbar_fbss(400), medication_request("864706", start_days_ago=120, supply_days=120)]
    if disorder:
        records.append(condition("F11.20", onset_days_ago=300))
    assert ("opioid-long-term" in run(*records).card_types) is fires


def test_opioid_use_disorder_without_moud_is_cited_with_long_term_opioids():
    finding = run(*lumbar_fbss(400), medication_request("1049621", start_days_ago=120, supply_days=120),
                  condition("F11.20", onset_days_ago=300)).finding("opioid-long-term")
    assert finding.details["oud_diagnosed"] is True and finding.details["oud_treatment"] is False
    assert "F11.20" in {ev.code for ev in finding.evidence}


def test_long_term_opioid_needs_current_spine_symptoms():
    evaluation = run(medication_request("1049621", start_days_ago=120, supply_days=120))
    assert evaluation.card_types == ()


def test_proposed_analgesics_are_not_conservative_care():
    evaluation = run(condition("M54.50", onset_days_ago=200),
                     medication_request("197807", start_days_ago=100, supply_days=60, intent="proposal"))
    assert evaluation.card_types == ()


def test_draft_and_proposal_opioid_orders_are_not_current():
    for extra in ({"status": "draft"}, {"intent": "proposal"}):
        evaluation = run(*lumbar_fbss(400), medication_request("1049621", start_days_ago=120, supply_days=120, **extra))
        assert "opioid-long-term" not in evaluation.card_types


# ------------------------------------------------------------------------------------------------ R8, R10


def test_deformity_with_spine_symptoms():
    """Errata 4: scoliosis is assessed on standing full-length films, spondylolisthesis on flexion/extension films
    of its own region."""
    finding = run(condition("M41.26"), condition("M54.50", onset_days_ago=20)).finding("deformity")
    assert keys(finding)[0] == "xr-spine-scoliosis" and "xr-lumbar-flex-ext" not in keys(finding)
    assert run(condition("M41.26")).card_types == ()
    lumbar = run(condition("M43.16"), condition("M54.50", onset_days_ago=20)).finding("deformity")
    assert keys(lumbar)[0] == "xr-lumbar-flex-ext" and lumbar.region == "lumbar"
    cervical = run(condition("M43.12"), condition("M54.2", onset_days_ago=20)).finding("deformity")
    assert keys(cervical)[0] == "xr-cervical-flex-ext" and cervical.region == "cervical"
    assert "xr-lumbar-flex-ext" not in keys(cervical)


def test_alternative_pain_generator_only_alongside_a_surgical_pathway_card():
    assert "alt-pain-generator" in run(*lumbar_fbss(273), condition("M46.1")).card_types
    assert run(condition("M46.1"), condition("M54.50", onset_days_ago=20)).card_types == ()


# ------------------------------------------------------------------------------------------------ R9


def risks(*resources):
    finding = run(*lumbar_fbss(273), *resources).finding("miss-risk")
    return finding.details["risks"] if finding else ()


@pytest.mark.parametrize(("value", "unit", "risk"), [(7.9, "%", False), (8.0, "%", True), (8.1, "%", True),
                                                     (63, "mmol/mol", False), (64, "mmol/mol", True)])
def test_hba1c_of_8_percent_or_more_is_uncontrolled_diabetes(value, unit, risk):
    """PMID 39829428's high-risk stratum is 8.0 % and above (Errata 8)."""
    assert ("uncontrolled-diabetes" in risks(observation("4548-4", value, unit, days_ago=30))) is risk


def test_recent_controlled_hba1c_overrides_an_uncontrolled_code():
    assert "uncontrolled-diabetes" in risks(condition("E11.65"))
    assert "uncontrolled-diabetes" not in risks(condition("E11.65"), observation("4548-4", 7.4, "%", days_ago=30))


def test_old_hba1c_is_ignored():
    assert "uncontrolled-diabetes" not in risks(observation("4548-4", 9.5, "%", days_ago=181))


def test_suboptimal_hba1c_is_a_note_only():
    finding = run(*lumbar_fbss(273), observation("4548-4", 7.5, "%"), condition("I25.10")).finding("miss-risk")
    assert "uncontrolled-diabetes" not in finding.details["risks"]
    assert any("suboptimal" in note for note in finding.details["notes"])


@pytest.mark.parametrize(("bmi", "risk"), [(34.9, None), (35.0, "obesity-class-2"), (40.0, "obesity-class-3")])
def test_bmi_from_35(bmi, risk):
    found = risks(observation("39156-5", bmi, "kg/m2", days_ago=100))
    assert (risk in found) if risk else not any(r.startswith("obesity") for r in found)


def test_obesity_code_counts_without_a_bmi():
    assert "obesity-class-2" in risks(condition("Z68.36"))
    assert not any(r.startswith("obesity") for r in risks(condition("E66.811")))


def test_smoking_status_observation_decides():
    current = ("449868002", "Current every day smoker")
    former = ("8517006", "Ex-smoker")
    assert "current-smoker" in risks(observation("72166-2", answer=current, days_ago=100))
    assert "current-smoker" not in risks(condition("F17.210"), observation("72166-2", answer=former, days_ago=100))
    assert "current-smoker" in risks(condition("F17.210"))
    assert "current-smoker" not in risks(condition("F17.211"))  # in remission
    assert "current-smoker" not in risks(observation("72166-2", answer=current, days_ago=731))


def test_cardiovascular_osteoporosis_and_scarring_risks():
    assert {"cardiovascular-disease", "osteoporosis", "scarring-or-multiply-operated"} <= set(
        risks(condition("I25.10"), condition("M81.0"), condition("G96.12")))


def test_two_surgeries_on_distinct_dates_are_multiply_operated_but_same_day_add_ons_are_one():
    symptom = condition("M54.16", onset_days_ago=100)
    same_day = run(procedure("22612", days_ago=500), procedure("22614", days_ago=500), symptom, condition("I25.10"))
    assert same_day.facts.regions["lumbar"].surgeries_count == 1
    assert "scarring-or-multiply-operated" not in same_day.finding("miss-risk").details["risks"]
    two_dates = run(procedure("22612", days_ago=500), procedure("63030", days_ago=300), symptom)
    assert two_dates.facts.regions["lumbar"].surgeries_count == 2
    assert "scarring-or-multiply-operated" in two_dates.finding("miss-risk").details["risks"]


def test_risks_alone_give_no_card():
    evaluation = run(condition("I25.10"), condition("E11.65"))
    assert evaluation.card_types == ()


# ------------------------------------------------------------------------------------------------ R11


def scs_case(post_op=200, pain=6, imaging=True, *extra):
    resources = [procedure("63030", days_ago=post_op), condition("M96.1", onset_days_ago=post_op - 30),
                 condition("M54.16", onset_days_ago=post_op - 30),
                 observation("72514-3", pain, "{score}", days_ago=5)]
    if imaging:
        resources.append(imaging_report("72158", days_ago=post_op - 60))
    return run(*resources, *extra)


def test_scs_consideration_fires_when_all_criteria_hold():
    finding = scs_case().finding("scs-consider")
    assert finding.details["pain"] == 6 and keys(finding) == ["referral-pain-management-scs"]


@pytest.mark.parametrize(("change", "value"), [("post_op", 181), ("pain", 4), ("imaging", False)])
def test_scs_consideration_nearest_misses(change, value):
    kwargs = {"post_op": 200, "pain": 6, "imaging": True, change: value}
    assert "scs-consider" not in scs_case(**kwargs).card_types


def test_no_scs_card_when_a_stimulator_is_present():
    """Errata 7: a device in place needs a generator (or Z96.82); a lead alone (63650, also a trial) is not one, and
    an explant after the implant clears it."""
    assert "scs-consider" not in scs_case(200, 6, True, procedure("63685", days_ago=100)).card_types
    assert "scs-consider" not in scs_case(200, 6, True, procedure("L8687", system="hcpcs", days_ago=100)).card_types
    assert "scs-consider" not in scs_case(200, 6, True, condition("Z96.82")).card_types
    assert "scs-consider" in scs_case(200, 6, True, procedure("63650", days_ago=100)).card_types
    explanted = scs_case(200, 6, True, procedure("63685", days_ago=100), procedure("63688", days_ago=20))
    assert "scs-consider" in explanted.card_types
    reimplanted = scs_case(200, 6, True, procedure("63688", days_ago=100), procedure("63685", days_ago=20))
    assert "scs-consider" not in reimplanted.card_types


def test_scs_removal_is_not_presence():
    assert "scs-consider" in scs_case(200, 6, True, procedure("63661", days_ago=100)).card_types


def test_scs_implant_is_not_an_index_surgery():
    evaluation = run(procedure("63650", days_ago=100), condition("M54.16", onset_days_ago=30))
    assert evaluation.facts.last_surgery is None


# ------------------------------------------------------------------------------------------------ order, one per type


def test_cards_come_in_catalogue_order_one_per_type():
    evaluation = run(procedure("22612", days_ago=400), procedure("63030", days_ago=800),
                     condition("M54.16", onset_days_ago=200),
                     condition("R26.2"), condition("M41.26"), condition("M46.1"), condition("I25.10"),
                     condition("M54.12", onset_days_ago=100),
                     medication_request("1049621", start_days_ago=120, supply_days=120),
                     procedure("97110", days_ago=150),  # physical therapy since the surgery: the referral's care
                     observation("72514-3", 7, "{score}", days_ago=3), imaging_report("72158", days_ago=250))
    assert evaluation.card_types == ("fbss-imaging", "revision-referral", "neuro-deficit", "opioid-long-term",
                                     "deformity", "alt-pain-generator", "miss-risk", "scs-consider")


def test_evaluation_never_reads_the_clock():
    later = run(*lumbar_fbss(273), now=E.replace(year=2026))
    assert later.finding("fbss-imaging").details["post_op_days"] == 273 + 365


def test_opioids_are_never_the_conservative_care_that_makes_a_referral_or_work_up_fire():
    """Errata 6 and 9: a course of opioids is a risk to address, not a failed trial of conservative care."""
    opioid = medication_request("1049621", start_days_ago=200, supply_days=200)
    after_surgery = run(procedure("63030", days_ago=400), condition("M54.16", onset_days_ago=300), opioid)
    assert "fbss-imaging" in after_surgery.card_types and "revision-referral" not in after_surgery.card_types
    no_surgery = run(condition("M54.50", onset_days_ago=300), opioid)
    assert "chronic-pain-specialist" not in no_surgery.card_types
    naproxen = medication_request("198014", start_days_ago=200, supply_days=200)
    assert "revision-referral" in run(procedure("63030", days_ago=400), condition("M54.16", onset_days_ago=300),
                                      naproxen).card_types
