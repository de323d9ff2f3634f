"""Rules R1-R11 of clinical-rules §3: facts in, findings out (at most one per card type, in catalogue order).

R1 (red flags) pre-empts everything; R2 (early post-operative window) suppresses everything else. Suggestions come
from suggestions.json; a study of a modality already on file for the region (F16) is left out and cited instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cds_service.clinical.facts import Facts, RegionFacts
from cds_service.clinical.knowledge import card_types, suggestion_catalogue
from cds_service.clinical.model import REGIONS, Evidence, Finding, Suggestion
from cds_service.fhir.dates import days_between
from cds_service.terminology.valuesets import terminology, value_set

CARD_ORDER = card_types()["patient-view"]
"""Card order in a patient-view response (card-types.json)."""


def _study_modality() -> dict[str | None, str | None]:
    """VS-IMG's study keys to their modality, built once per value-set version."""
    return terminology().derived("study-modality", lambda: {
        m.first("study"): m.first("modality") for m in value_set("VS-IMG").members})


def suggestions_for(card_type: str, region: str | None, facts: Facts,
                    entry: str | None = None) -> tuple[tuple[Suggestion, ...], tuple[Evidence, ...]]:
    """The catalogue's suggestions for a card type and region, minus studies already on file (F16)."""
    table = suggestion_catalogue().get(entry or card_type, {})
    rows = table.get(region or "", table.get("any", []))
    region_facts = facts.regions.get(region) if region else None
    kept: list[Suggestion] = []
    omitted: list[Evidence] = []
    for row in rows:
        if "study" in row:
            modality = _study_modality().get(row["study"])
            recent = region_facts.recent_imaging(modality) if region_facts and modality else ()
            if recent and not row.get("always"):
                omitted.extend(recent)
                continue
            if "when_instrumented" in row and not _instrumented(region_facts, row["when_instrumented"], facts):
                continue
            kept.append(Suggestion(row["study"], "study", bool(row.get("recommended")), bool(row.get("optional")),
                                   row.get("priority", "routine")))
        else:
            kept.append(Suggestion(row["order"], "order", bool(row.get("recommended")), False,
                                   row.get("priority", "routine")))
    return tuple(kept), tuple(dict.fromkeys(omitted))


def _instrumented(region_facts: RegionFacts | None, kinds: list[str], facts: Facts) -> bool:
    """A surgery of one of `kinds` in the region (fusion, hardware, ...), or a stimulator that may make MRI unsafe."""
    return bool(facts.scs_present) or (region_facts is not None
                                 and any(not surgery.kinds.isdisjoint(kinds) for surgery in region_facts.surgeries))


def _entry_recent(entry: Any, now: datetime, days: int) -> bool:
    """Began within `days`: by onset[x], or (no onset recorded) by the recorded date. A red flag errs toward alerting:
    a finding entered today without an onset is treated as new; one whose onset is older is a sequela."""
    when = entry.onset or entry.recorded
    return when is not None and when <= now and days_between(when, now) <= days


def _sequela(evidence: Evidence) -> bool:
    """An ICD-10-CM code whose 7th character is S (sequela): a late effect, not a new injury."""
    code = (evidence.code or "").replace(".", "").upper()
    return evidence.system == "icd10cm" and len(code) >= 7 and code.endswith("S")


def latest_symptom_onset(facts: Facts) -> datetime | None:
    """The most recent onset of a current spine-symptom diagnosis (VS-04, not the supporting ones): how new the
    newest symptom is, whatever older symptoms the chart also holds."""
    onsets = [entry.onset for entry, _, member in facts.current_by_vs.get("VS-04", ())
              if entry.onset is not None and entry.onset <= facts.now and not member.has("role", "supporting")]
    return max(onsets) if onsets else None


def red_flags(facts: Facts) -> list[Evidence]:
    """R1 / F9: every red-flag finding, each with its evidence (VS-07 subsets and roles; thresholds.json).

    Alone: recent cauda equina, cord compromise (paraplegia, cord compression, post-operative haematoma), spinal or
    device infection (procedure-related codes only after a spine surgery), recent vertebral fracture. With spine
    context (a current spine symptom or a prior spine surgery): new sphincter dysfunction (incontinence codes with
    new saddle anaesthesia), new motor deficit. Fever: after recent surgery or with a spine symptom. Known spinal
    metastases: with any current spine symptom. Cancer (active or history) or immunosuppression: with a new spine
    symptom (ACR low back pain variant 7). For patients with and without prior surgery alike.
    """
    t, now = facts.thresholds, facts.now
    flags = facts.red_flag_conditions
    symptoms = facts.any_symptom
    spine_context = symptoms or facts.prior_surgery
    recent = t.red_flag_recent_days
    found: list[Evidence] = []
    found += [ev for entry, ev, _ in flags.get("cauda-equina", ())
              if entry.current and _entry_recent(entry, now, recent)]
    found += [ev for entry, ev, _ in flags.get("cord-compromise", ())
              if entry.current and _entry_recent(entry, now, recent)]
    found += [ev for entry, ev, m in flags.get("infection", ())
              if entry.current and (facts.prior_surgery or not m.has("role", "needs-spine-surgery"))]
    found += [ev for entry, ev, m in flags.get("fracture", ())
              if entry.current and not _sequela(ev) and _entry_recent(entry, now, t.fracture_recent_days)
              and (symptoms or not m.has("role", "needs-spine-symptom"))]
    if spine_context:
        saddle = any(entry.current and _entry_recent(entry, now, recent) for entry, _, _ in
                     flags.get("saddle-anaesthesia", ()))
        found += [ev for entry, ev, m in flags.get("bladder-bowel", ())
                  if entry.current and _entry_recent(entry, now, recent)
                  and (saddle or not m.has("role", "needs-saddle-anaesthesia"))]
        found += [ev for entry, ev, _ in flags.get("motor-deficit", ())
                  if entry.current and _entry_recent(entry, now, recent)]
    after_surgery = facts.post_op_days is not None and facts.post_op_days <= t.fever_postop_days
    if after_surgery or symptoms:
        found += [ev for entry, ev, _ in flags.get("fever", ()) if entry.current and _entry_recent(entry, now, recent)]
    if symptoms:
        found += [ev for entry, ev, _ in flags.get("metastatic-bone", ()) if entry.current]
    newest = latest_symptom_onset(facts)
    if newest is not None and days_between(newest, now) <= t.new_symptom_days:
        found += [ev for entry, ev, _ in (*flags.get("active-cancer", ()), *flags.get("immunosuppression", ()))
                  if entry.current]
        found += [ev for _, ev, _ in flags.get("cancer-history", ())]
    return list(dict.fromkeys(found))


def imaging_risk_factors(facts: Facts) -> tuple[Evidence, ...]:
    """What makes early lumbar imaging appropriate whatever the onset (ACR low back pain variants 6-7; AHCPR red-flag
    table): a recent fever, immunosuppression or systemic steroids, cancer (history, active or metastatic), a fracture
    or osteoporosis, at any date. Age is read separately (OLDER_PATIENT_AGE). The imaging-not-indicated card (O2) never
    fires with any of them."""
    t, now = facts.thresholds, facts.now
    flags = facts.red_flag_conditions
    found = [ev for entry, ev, _ in flags.get("fever", ()) if entry.current
             and _entry_recent(entry, now, t.red_flag_recent_days)]
    found += [ev for entry, ev, _ in (*flags.get("immunosuppression", ()), *flags.get("active-cancer", ()),
                                      *flags.get("metastatic-bone", ())) if entry.current]
    found += [ev for _, ev, _ in (*flags.get("cancer-history", ()), *flags.get("fracture", ()))]
    found += [ev for _, ev, _ in facts.current_by_vs.get("VS-15", ())]
    return tuple(dict.fromkeys(found))


def red_flag_finding(facts: Facts) -> Finding | None:
    """The red-flag card when R1 fires: the one pre-emption step of every hook. When it fires it is the only card:
    every routine card and every 'not indicated' or 'duplicate' order card is silenced."""
    flags = red_flags(facts)
    if not flags:
        return None
    region = symptomatic_region(facts)
    flagged = set(flags)
    named = {r for items in facts.red_flag_conditions.values() for _, ev, m in items if ev in flagged
             for r in m.attributes.get("region", ())}
    if named and region not in named:  # a cervical fracture is imaged in the neck, whatever else the chart holds
        region = next(r for r in REGIONS if r in named)
    suggestions, _ = suggestions_for("red-flag", region, facts)
    # What made the findings spine red flags, cited after them: the newest spine symptom and the last spine surgery
    # (a bladder finding or a cancer history is a red flag only with them).
    symptom = max((ev for r in REGIONS for ev in facts.regions[r].symptoms if ev.date is not None),
                  key=lambda ev: ev.date, default=None)  # type: ignore[arg-type, return-value]
    surgery = facts.last_surgery.evidence if facts.last_surgery is not None else None
    context = tuple(ev for ev in (symptom, surgery) if ev is not None and ev not in flagged)
    return Finding("red-flag", "R1", (*flags, *context), region, suggestions,
                   {"findings": tuple(ev.display for ev in flags), "flag_count": len(flags),
                    "after_surgery": facts.prior_surgery})


def symptomatic_region(facts: Facts) -> str:
    """The region a card is about: that of the last surgery, else the first region with symptoms, else lumbar."""
    if facts.last_surgery is not None and len(facts.last_surgery.regions) == 1:
        return next(iter(facts.last_surgery.regions))
    return next((r for r in REGIONS if facts.regions[r].symptoms), "lumbar")


def evaluate_rules(facts: Facts) -> list[Finding]:
    """Findings for the facts, in card order, at most one per card type."""
    t = facts.thresholds
    flagged = red_flag_finding(facts)
    if flagged:  # R1 pre-empts every other card
        return [flagged]
    if facts.post_op_days is not None and facts.post_op_days < t.early_postop_days:
        return []  # R2: normal early post-operative course

    findings: dict[str, Finding] = {}
    imaging = _fbss_imaging(facts)
    if imaging:
        findings["fbss-imaging"] = imaging
        referral = _revision_referral(facts, facts.regions[imaging.region or "lumbar"], imaging)
        if referral:
            findings["revision-referral"] = referral
    chronic = None if imaging else _chronic_pain_specialist(facts)
    if chronic:
        findings["chronic-pain-specialist"] = chronic
    for finding in (_neuro_deficit(facts, imaging or chronic), _opioid_long_term(facts), _deformity(facts)):
        if finding:
            findings[finding.card_type] = finding
    surgical_context = bool(imaging or chronic)
    if surgical_context:
        alt = _alt_pain_generator(facts)
        if alt:
            findings["alt-pain-generator"] = alt
        risk = miss_risk(facts, (imaging or chronic).region)  # type: ignore[union-attr]
        if risk:
            findings["miss-risk"] = risk
    referral = findings.get("revision-referral")
    scs = _scs_consider(facts, imaging, structural=bool(referral and referral.details.get("structural")))
    if scs:
        findings["scs-consider"] = scs
    return [findings[card_type] for card_type in CARD_ORDER if card_type in findings]


def _fbss_imaging(facts: Facts) -> Finding | None:
    """R3: persistent (>= 84 d or date unknown) post-op symptoms, or new neurological findings at 42-84 d."""
    t = facts.thresholds
    candidates = []
    for region in REGIONS:
        rf = facts.regions[region]
        if not rf.post_op_symptom:
            continue
        days = rf.post_op_days
        if days is None or days >= t.persistent_days:
            evidence = (rf.last_surgery.evidence, *rf.symptoms)  # type: ignore[union-attr]
        elif days >= t.early_postop_days and rf.new_neuro_findings:
            evidence = (rf.last_surgery.evidence, *rf.new_neuro_findings)  # type: ignore[union-attr]
        else:
            continue
        candidates.append((rf, evidence))
    if not candidates:
        return None
    # One card per type: the region operated on most recently (undated surgeries last).
    rf, evidence = max(candidates, key=lambda c: (c[0].last_surgery.date is not None,  # type: ignore[union-attr]
                                                  c[0].last_surgery.date or datetime.min))  # type: ignore[union-attr]
    suggestions, omitted = suggestions_for("fbss-imaging", rf.region, facts)
    details = {
        "post_op_days": rf.post_op_days,
        "post_op_weeks": rf.post_op_days // 7 if rf.post_op_days is not None else None,
        "surgery_date_known": rf.post_op_days is not None,
        "new_neuro_findings": bool(rf.post_op_days is not None and rf.post_op_days < t.persistent_days),
        "scs_present": facts.scs_present,
    }
    return Finding("fbss-imaging", "R3", tuple(dict.fromkeys(evidence)), rf.region, suggestions, details, omitted)


def _cause(evidence: Evidence) -> str:
    """The cause of a structural finding: intrinsic problems by their diagnosis as recorded, the other categories by
    a key the card template words (cause_labels)."""
    if evidence.what == "intrinsic" and evidence.display:
        return evidence.display.split(",")[0]
    return evidence.what


def _revision_referral(facts: Facts, rf: RegionFacts, imaging: Finding) -> Finding | None:
    """R4: R3 fired and a structural cause (F10), or >= 84 d post-op with conservative care since the surgery."""
    t = facts.thresholds
    if rf.structural:
        causes = tuple(dict.fromkeys(_cause(ev) for ev in rf.structural))
        evidence = (rf.last_surgery.evidence, *rf.structural)  # type: ignore[union-attr]
        return Finding("revision-referral", "R4", evidence, rf.region,
                       suggestions_for("revision-referral", rf.region, facts)[0],
                       {"causes": causes, "structural": rf.structural})
    days = rf.post_op_days
    if days is not None and days < t.persistent_days:
        return None
    since = rf.last_surgery.date if rf.last_surgery else None
    care = facts.conservative_care(since, after_surgery=True)
    if not care:
        return None
    # The persistent symptoms are why a surgeon should look again; the care tried is listed apart (template `care`).
    evidence = tuple(dict.fromkeys((rf.last_surgery.evidence, *rf.symptoms, *care)))  # type: ignore[union-attr]
    return Finding("revision-referral", "R4", evidence, rf.region,
                   suggestions_for("revision-referral", rf.region, facts)[0],
                   {"causes": ("conservative-care-failed",), "conservative_care": care})


def _chronic_pain_specialist(facts: Facts) -> Finding | None:
    """R5: no prior surgery in the region, symptoms for > 12 weeks, and conservative care in the last year."""
    t = facts.thresholds
    for region in REGIONS:
        rf = facts.regions[region]
        if rf.prior_surgery or not rf.symptoms or rf.symptom_onset is None:
            continue
        if days_between(rf.symptom_onset, facts.now) < t.persistent_days:
            continue
        care = facts.conservative_care(facts.now - timedelta(days=t.conservative_lookback_days))
        if not care:
            continue
        suggestions, omitted = suggestions_for("chronic-pain-specialist", region, facts)
        return Finding("chronic-pain-specialist", "R5", (*rf.symptoms, *care), region, suggestions,
                       {"symptom_days": days_between(rf.symptom_onset, facts.now),
                        "symptom_weeks": days_between(rf.symptom_onset, facts.now) // 7,
                        "conservative_care": care}, omitted)
    return None


def _neuro_deficit(facts: Facts, imaging_card: Finding | None) -> Finding | None:
    """R6: current gait/strength/myelopathy findings (R1 not fired, not early post-op: checked by the caller)."""
    if not facts.neuro_deficit:
        return None
    region = imaging_card.region if imaging_card else symptomatic_region(facts)
    if facts.neuro_regions and region not in facts.neuro_regions:
        # The deficit points to a region (cervical myelopathy, lumbar foot drop): its imaging is of that region.
        region = next(r for r in REGIONS if r in facts.neuro_regions)
    suggestions, _ = suggestions_for("neuro-deficit", region, facts)
    omitted: tuple[Evidence, ...] = ()
    if imaging_card is None:  # imaging is carried by R3/R5; without them, add MRI of the region without contrast
        extra, omitted = suggestions_for("neuro-deficit", region, facts, entry="neuro-deficit-imaging")
        suggestions = (*suggestions, *extra)
    return Finding("neuro-deficit", "R6", facts.neuro_deficit, region, suggestions, {}, omitted)


def _opioid_long_term(facts: Facts) -> Finding | None:
    """R7: long-term opioid therapy (F8) with current spine symptoms."""
    therapy = facts.long_term_opioid
    if therapy is None or not facts.any_symptom:
        return None
    region = symptomatic_region(facts)
    return Finding("opioid-long-term", "R7", (*therapy.evidence, *facts.opioid_use_disorder), region,
                   suggestions_for("opioid-long-term", region, facts)[0],
                   {"days": therapy.days, "oud_treatment": therapy.opioid_use_disorder_treatment,
                    "oud_diagnosed": bool(facts.opioid_use_disorder)})


def _deformity(facts: Facts) -> Finding | None:
    """R8: spinal deformity with current spine symptoms."""
    if not facts.deformity or not facts.any_symptom:
        return None
    deformity = facts.current_by_vs.get("VS-09", ())
    if any(m.has("kind", "curvature") for _, _, m in deformity):
        region, key = symptomatic_region(facts), "curvature"  # scoliosis or kyphosis: standing full-length films
    else:
        named = {r for _, _, m in deformity for r in m.attributes.get("region", ())}
        region = next((r for r in REGIONS if r in named), symptomatic_region(facts))
        key = region
    suggestions, omitted = suggestions_for("deformity", key, facts)
    return Finding("deformity", "R8", facts.deformity, region, suggestions,
                   {"diagnoses": tuple(ev.display for ev in facts.deformity)}, omitted)


def _alt_pain_generator(facts: Facts) -> Finding | None:
    """R10: a non-spinal pain generator alongside a surgical-pathway card."""
    if not facts.alt_generators:
        return None
    mimics = tuple(dict.fromkeys(mimic for _, ev, m in facts.current_by_vs.get("VS-10", ())
                                 if ev in facts.alt_generators for mimic in m.attributes.get("mimic", ())))
    return Finding("alt-pain-generator", "R10", facts.alt_generators, None, (),
                   {"diagnoses": tuple(ev.display for ev in facts.alt_generators), "mimics": mimics})


def _neuropathic_component(facts: Facts) -> bool:
    """A radicular or neuropathic component (VS-05 radiculopathy, or neuropathic pain 247398009): NICE TA159
    recommends stimulation for neuropathic pain, not for axial back pain alone."""
    return any(m.has("subset", "radiculopathy") or m.has("subset", "neuropathic")
               for _, _, m in facts.current_by_vs.get("VS-04", ()))


def scs_exclusions(facts: Facts, structural: bool) -> tuple[Evidence, ...]:
    """What rules out suggesting stimulation now (NASS: no active substance abuse; a structural cause is for the
    spine surgeon first): an active substance use disorder, an active malignancy (not C44 skin, evidence within
    MALIGNANCY_ACTIVE_DAYS) or spinal metastases, a structural cause for revision, or a spine-surgeon referral open."""
    t, now = facts.thresholds, facts.now
    flags = facts.red_flag_conditions
    malignancy = [ev for entry, ev, _ in flags.get("metastatic-bone", ()) if entry.current]
    malignancy += [ev for entry, ev, _ in flags.get("active-cancer", ())
                   if entry.current and _entry_recent(entry, now, t.malignancy_active_days)]
    found = (*facts.active_substance_use, *malignancy, *facts.open_spine_referrals)
    if structural:
        found = (*found, *(ev for rf in facts.regions.values() for ev in rf.structural))
    return tuple(found)


def _scs_consider(facts: Facts, imaging: Finding | None, structural: bool = False) -> Finding | None:
    """R11: FBSS >= 6 months after surgery, pain >= 5/10, post-op MRI/CT on file, a radicular or neuropathic
    component, no stimulator yet, and nothing that rules stimulation out (scs_exclusions)."""
    t = facts.thresholds
    if not (facts.fbss_diagnoses or imaging) or facts.scs_present or scs_exclusions(facts, structural):
        return None
    if not _neuropathic_component(facts):
        return None
    region = imaging.region if imaging else symptomatic_region(facts)
    rf = facts.regions[region or "lumbar"]
    days = rf.post_op_days if rf.prior_surgery else facts.post_op_days
    if days is None or days < t.scs_min_postop_days:
        return None
    if facts.latest_pain is None or facts.latest_pain_value is None or facts.latest_pain_value < t.pain_scs_score:
        return None
    if not rf.post_op_imaging:
        return None
    evidence = (*facts.fbss_diagnoses, facts.latest_pain, *rf.post_op_imaging)
    if rf.last_surgery is not None:
        evidence = (rf.last_surgery.evidence, *evidence)
    return Finding("scs-consider", "R11", tuple(dict.fromkeys(evidence)), region,
                   suggestions_for("scs-consider", region, facts)[0],
                   {"post_op_days": days, "pain": facts.latest_pain_value})


# ---------------------------------------------------------------------------------------------- R9 / F14 MISS risks

def miss_risk(facts: Facts, region: str | None, rule: str = "R9") -> Finding | None:
    """R9 / F14: the MISS risk factors present, each with its value and date; None when there is none."""
    risks, notes, suggestion_keys = miss_risks(facts, region)
    if not risks:
        return None
    catalogue = suggestion_catalogue().get("miss-risk", {})
    suggestions = tuple(Suggestion(row["order"], "order") for key in suggestion_keys for row in catalogue.get(key, []))
    evidence = tuple(ev for _, evs in risks for ev in evs)
    return Finding("miss-risk", rule, evidence, region, suggestions,
                   {"risks": tuple(name for name, _ in risks), "risk_evidence": tuple(risks), "notes": tuple(notes)})


def _latest(items: Iterable[tuple[Any, Evidence, Any]], now: datetime, days: int) -> tuple[Any, Evidence, Any] | None:
    recent = [item for item in items if item[0].effective is not None
              and item[0].effective <= now and days_between(item[0].effective, now) <= days]
    return max(recent, key=lambda item: item[0].effective) if recent else None


Risk = tuple[str, tuple[Evidence, ...]]


def miss_risks(facts: Facts, region: str | None) -> tuple[list[Risk], list[str], list[str]]:
    """(risks with evidence, detail-only notes, suggestion keys) per the R9 table, in the table's order."""
    current = facts.current_by_vs
    risks: list[Risk] = []
    notes: list[str] = []
    for check in (_diabetes_risk, _obesity_risk, _smoking_risk):
        risk, note = check(facts)
        risks += [risk] if risk else []
        notes += [note] if note else []
    keys = [name for name, _ in risks]  # the suggestion catalogue is keyed by these risk names
    cardiovascular = tuple(ev for _, ev, _m in current.get("VS-14", ()))
    if cardiovascular:
        risks.append(("cardiovascular-disease", cardiovascular))
    rf = facts.regions.get(region) if region else None
    scarring = tuple(ev for _, ev, _m in current.get("VS-16", ()))
    if rf is not None and rf.surgeries_count >= facts.thresholds.multiply_operated_surgeries:
        scarring = (*tuple(s.evidence for s in rf.surgeries), *scarring)
    if scarring:
        risks.append(("scarring-or-multiply-operated", tuple(dict.fromkeys(scarring))))
    bone = tuple(ev for _, ev, _m in current.get("VS-15", ()))
    if bone:
        risks.append(("osteoporosis", bone))
    return risks, notes, [("obesity" if k.startswith("obesity") else k) for k in keys]


def _diabetes_risk(facts: Facts) -> tuple[Risk | None, str | None]:
    """A recent HbA1c decides (>= 8.0 %; 7.0 up to 8.0 % is a note); without one, an uncontrolled-diabetes code."""
    t = facts.thresholds
    a1c = _latest(((e, ev, m) for e, ev, m in facts.observations_by_vs.get("VS-LAB-A1C", ()) if e.value is not None),
                  facts.now, t.hba1c_lookback_days)
    if a1c is not None:
        entry, ev, member = a1c
        percent = hba1c_percent(entry.value, entry.unit, member.first("unit"))
        if percent is None:
            return None, None
        if percent >= t.hba1c_uncontrolled_percent:
            return ("uncontrolled-diabetes", (replace(ev, what="HbA1c", value=f"{percent:.1f} %"),)), None
        if percent >= t.hba1c_suboptimal_percent:
            return None, f"HbA1c {percent:.1f} % is suboptimal (below {t.hba1c_uncontrolled_percent:.1f} %)"
        return None, None
    vs11 = facts.current_by_vs.get("VS-11", ())
    diabetes = any(m.has("subset", "diabetes") for _, _, m in vs11)
    uncontrolled = tuple(ev for _, ev, m in vs11 if m.has("subset", "uncontrolled")
                         and (diabetes or not m.has("role", "requires-diabetes")))
    return (("uncontrolled-diabetes", uncontrolled) if uncontrolled else None), None


def _obesity_risk(facts: Facts) -> tuple[Risk | None, str | None]:
    """A recent BMI decides (>= 35 class 2, >= 40 class 3; 30-34.9 is a note); without one, a class >= 2 code."""
    t = facts.thresholds
    bmi = _latest(((e, ev, m) for e, ev, m in facts.observations_by_vs.get("VS-12", ())
                   if m.has("subset", "bmi-observation") and e.value is not None and 10 <= e.value <= 150),
                  facts.now, t.bmi_lookback_days)
    if bmi is not None:
        entry, ev, _ = bmi
        shown = replace(ev, what="BMI", value=f"{entry.value:.1f} kg/m2")
        if entry.value >= t.bmi_risk:
            return ("obesity-class-3" if entry.value >= t.bmi_class3 else "obesity-class-2", (shown,)), None
        if entry.value >= t.bmi_obese:
            return None, f"BMI {entry.value:.1f} kg/m2 (obesity class 1; not a listed risk)"
        return None, None
    severe = tuple(ev for _, ev, m in facts.current_by_vs.get("VS-12", ()) if m.has("subset", "class2plus"))
    return (("obesity-class-2", severe) if severe else None), None


def _smoking_risk(facts: Facts) -> tuple[Risk | None, str | None]:
    """The most recent smoking-status answer decides; without one, a current tobacco code (not in remission)."""
    status = _latest(((e, ev, m) for e, ev, m in facts.observations_by_vs.get("VS-13", ())
                      if m.has("subset", "status-observation") and _smoking_answer(e) is not None),
                     facts.now, facts.thresholds.smoking_lookback_days)
    if status is not None:
        entry, ev, _ = status
        display, subset = _smoking_answer(entry)  # type: ignore[misc]
        if subset == "answer-current":
            return ("current-smoker", (replace(ev, what="smoking status", value=display),)), None
        return None, None
    smoking = tuple(ev for _, ev, m in facts.current_by_vs.get("VS-13", ()) if m.has("subset", "condition-current"))
    return (("current-smoker", smoking) if smoking else None), None


def _smoking_answer(entry: Any) -> tuple[str, str] | None:
    """(display, subset) of a smoking-status answer that says current, former or never; None if unknown/absent."""
    hit = value_set("VS-13").match(entry.answer)
    if hit is None:
        return None
    coding, member = hit
    subset = member.first("subset")
    if subset not in ("answer-current", "answer-former", "answer-never"):
        return None
    return (coding.get("display") or member.display), subset


def hba1c_percent(value: float | None, unit: str | None, default_unit: str | None) -> float | None:
    """HbA1c as NGSP %: `%` as is; IFCC mmol/mol converted (NGSP = 0.09148 x IFCC + 2.152).

    The converted value is rounded to 0.1 %, the precision NGSP results are reported in, so that 64 mmol/mol is 8.0 %
    (at the high-risk threshold, PMID 39829428's 8.0 % and above) and 63 mmol/mol is 7.9 %.
    """
    if value is None:
        return None
    unit_key = (unit or "").strip().lower().replace(" ", "")
    if unit_key in ("mmol/mol",) or (not unit_key and default_unit == "mmol-per-mol"):
        return round(0.09148 * value + 2.152, 1)
    if unit_key in ("%", "percent", "") and 2 <= value <= 25:
        return value
    return None
