"""Order rules O1-O5 of clinical-rules §4.3: draft orders classified, then judged against the patient's facts.

Pure, like the patient-view rules: the facts are derived from the same PatientRecord, the draft orders are plain
dicts (already parsed by cds_service.hooks.draft_orders), and nothing here reads a clock or performs I/O. A red flag
at order time returns the red-flag card only. At most one card per type; one card lists every order it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.clinical.facts import Facts, is_spine_referral, regions_in_words
from cds_service.clinical.knowledge import card_types
from cds_service.clinical.medications import is_moud, opioid_match
from cds_service.clinical.model import REGIONS, SYSTEM_LABELS, Evidence, Finding, Suggestion
from cds_service.clinical.rules import (
    imaging_risk_factors,
    miss_risk,
    red_flag_finding,
    suggestions_for,
    symptomatic_region,
)
from cds_service.fhir.dates import days_between
from cds_service.fhir.record import codeable_text
from cds_service.terminology.valuesets import Member, canonical_system, concept_matches, value_set

ORDER_CARD_ORDER = card_types()["orders"]
"""Card order in an order-select or order-sign response (card-types.json)."""


@dataclass(frozen=True)
class OrderItem:
    """A draft order as the rules see it."""

    reference: str                       # "ServiceRequest/sr1"
    kind: str                            # "imaging", "opioid", "spine-surgery" or "other"
    label: str                           # what the clinician ordered, with its code
    study: str | None = None
    modality: str | None = None
    regions: frozenset[str] = frozenset()
    contrast: str | None = None
    reasons: tuple[Any, ...] = ()
    priority: str | None = None
    medication: Member | None = None     # the VS-19 member an opioid order matched (MOUD is told apart by it)


def _label(display: str, system: str | None, code: str | None) -> str:
    label = SYSTEM_LABELS.get(system or "", system)
    return f"{display} ({label} {code})" if code and label else display


def classify(resource_type: str, resource: Mapping[str, Any], reference: str,
             medication: Mapping[str, Any] | None = None) -> OrderItem:
    """Imaging (VS-IMG: modality, region, contrast), opioid (VS-19, or an opioid named in the text), spine surgery
    (VS-01, or a referral to a spine surgeon), or other."""
    if resource_type == "MedicationRequest":
        return _classify_medication(reference, medication or {})
    if resource_type == "ServiceRequest":
        return _classify_service_request(reference, resource)
    return OrderItem(reference, "other", resource_type)


def _classify_medication(reference: str, concept: Mapping[str, Any]) -> OrderItem:
    text = codeable_text(concept)
    found = opioid_match(concept)
    if found is None:
        return OrderItem(reference, "other", text or "medication order")
    coding, member = found
    if coding is None:
        return OrderItem(reference, "opioid", text, medication=member)
    return OrderItem(reference, "opioid", _label(coding.get("display") or member.display, "rxnorm", coding.get("code")),
                     medication=member)


def _classify_service_request(reference: str, resource: Mapping[str, Any]) -> OrderItem:
    reasons = tuple(r for r in resource.get("reasonCode") or () if isinstance(r, dict))
    priority = resource.get("priority") if isinstance(resource.get("priority"), str) else None
    code = resource.get("code")
    imaging = value_set("VS-IMG").match(code)
    if imaging is not None:
        coding, member = imaging
        regions = frozenset(member.attributes.get("region", ()))
        if len(regions) > 1:
            regions = regions_in_words(codeable_text(code)) & regions or regions
        label = _label(coding.get("display") or member.display, canonical_system(coding.get("system")),
                       coding.get("code"))
        return OrderItem(reference, "imaging", label, member.first("study"), member.first("modality"), regions,
                         member.first("contrast"), reasons, priority)
    surgery = value_set("VS-01").match(code)
    if surgery is not None and surgery[1].first("role") in ("index", "addon"):
        coding, member = surgery
        label = _label(coding.get("display") or member.display, canonical_system(coding.get("system")),
                       coding.get("code"))
        return OrderItem(reference, "spine-surgery", label)
    if is_spine_referral(resource):
        return OrderItem(reference, "spine-surgery",
                         f"Referral: {codeable_text(resource.get('performerType')) or 'spine'}")
    return OrderItem(reference, "other", codeable_text(code) or "service request", reasons=reasons, priority=priority)


def evaluate_order_rules(facts: Facts, orders: Iterable[OrderItem]) -> list[Finding]:
    """Findings for the draft orders under review (all at order-sign, the selected ones at order-select)."""
    orders = list(orders)
    flagged = red_flag_finding(facts)
    if flagged:  # R1 pre-empts every order card, as at patient-view
        return [flagged]
    grouped: dict[str, list[tuple[OrderItem, Finding]]] = {}
    for order in orders:
        finding = _imaging_rule(facts, order) if order.kind == "imaging" else None
        finding = finding or (_opioid_rule(facts, order) if order.kind == "opioid" else None)
        if finding:
            grouped.setdefault(finding.card_type, []).append((order, finding))
    if any(order.kind == "spine-surgery" for order in orders):
        risk = miss_risk(facts, symptomatic_region(facts), rule="O5")
        if risk:
            surgical = [o for o in orders if o.kind == "spine-surgery"]
            grouped["miss-risk"] = [(o, risk) for o in surgical]
    return [_merge(card_type, grouped[card_type]) for card_type in ORDER_CARD_ORDER if card_type in grouped]


def _merge(card_type: str, items: list[tuple[OrderItem, Finding]]) -> Finding:
    """One card per type, listing every order it concerns."""
    first = items[0][1]
    evidence = tuple(dict.fromkeys(ev for _, finding in items for ev in finding.evidence))
    unique: dict[tuple[str, str, tuple[str, ...]], Suggestion] = {}
    for _, finding in items:
        for suggestion in finding.suggestions:
            unique.setdefault((suggestion.key, suggestion.kind, suggestion.deletes), suggestion)
    suggestions = tuple(unique.values())
    details = dict(first.details)
    details["orders"] = tuple(dict.fromkeys(order.label for order, _ in items))
    return Finding(card_type, first.rule, evidence, first.region, suggestions, details, first.omitted)


def _imaging_rule(facts: Facts, order: OrderItem) -> Finding | None:
    """O3 (a duplicate) takes precedence over O1 (protocol) and O2 (not indicated) for the same order."""
    return _duplicate(facts, order) or _protocol(facts, order) or _not_indicated(facts, order)


_URGENT = frozenset({"urgent", "asap", "stat"})


def _order_overrides(order: OrderItem) -> bool:
    """What the order itself says that no 'not indicated' or 'duplicate' card may argue with: an urgent, asap or stat
    priority, or a reason that is a red flag (VS-07), a neurological deficit (VS-06) or a radiculopathy (VS-05)."""
    if order.priority in _URGENT:
        return True
    for reason in order.reasons:
        for _, members in concept_matches(reason):
            for member in members:
                if (member.value_set == "VS-07" and not member.has("subset", "skin-cancer")) \
                        or (member.value_set == "VS-06" and not member.has("role", "supporting")) \
                        or (member.value_set == "VS-04" and member.has("subset", "radiculopathy")):
                    return True
    return False


def _same_protocol(order: OrderItem, contrast: str | None) -> bool:
    """Whether a study on file is the protocol ordered: for MRI and CT the contrast must be known on both and equal
    (a code of unspecified contrast, such as LOINC 24968-0, is never the same protocol); radiographs have none to
    compare."""
    if order.modality not in ("MRI", "CT"):
        return True
    return order.contrast not in (None, "unspecified") and contrast == order.contrast


def _new_since(facts: Facts, since: datetime, regions: frozenset[str]) -> bool:
    """A current spine symptom (VS-04) or neurological deficit (VS-06) of the order's region that began after `since`
    (onset, else the recorded date: a finding entered after the study may be new)."""
    for vs_id in ("VS-04", "VS-06"):
        for entry, _, member in facts.current_by_vs.get(vs_id, ()):
            if member.has("role", "supporting") or not regions & set(member.attributes.get("region", REGIONS)):
                continue
            if entry.onset is not None and entry.onset > since:
                return True
    return False


def _duplicate(facts: Facts, order: OrderItem) -> Finding | None:
    """O3: the same modality, region and contrast protocol already on file within IMAGING_SUPPRESS_DAYS (after the
    last surgery); never for an urgent order or one whose reason is a red flag or deficit, and never when a symptom
    or deficit began after the study."""
    if _order_overrides(order):
        return None
    on_file = [ev for region in order.regions & set(REGIONS)
               for ev, modality, contrast in facts.regions[region].recent_studies
               if modality == order.modality and _same_protocol(order, contrast)]
    if not on_file:
        return None
    latest = max(ev.date for ev in on_file if ev.date is not None)
    if _new_since(facts, latest, order.regions):
        return None
    return Finding("imaging-duplicate", "O3", tuple(dict.fromkeys(on_file)), next(iter(sorted(order.regions))),
                   (Suggestion("remove-draft", "delete", deletes=(order.reference,)),))


def _protocol(facts: Facts, order: OrderItem) -> Finding | None:
    """O1: MRI lumbar without contrast after prior lumbar surgery with post-op symptoms: replace it with 72158."""
    if order.study != "mri-lumbar-wo":
        return None
    lumbar = facts.regions["lumbar"]
    days = lumbar.post_op_days
    if not lumbar.post_op_symptom or (days is not None and days < facts.thresholds.early_postop_days):
        return None
    replacement = Suggestion("mri-lumbar-wo-w", "study", recommended=True, priority=order.priority or "routine",
                             deletes=(order.reference,), reasons=order.reasons)
    evidence = (lumbar.last_surgery.evidence, *lumbar.symptoms)  # type: ignore[union-attr]
    return Finding("imaging-protocol", "O1", evidence, "lumbar", (replacement,), {"post_op_days": days})


def _not_indicated(facts: Facts, order: OrderItem) -> Finding | None:
    """O2: lumbar MRI/CT in the first 6 weeks of new low back pain with nothing that makes early imaging appropriate
    (ACR low back pain variants 1-2). Never for an urgent order or one whose reason is a red flag, after spine
    surgery, with a deficit or radiculopathy, with any imaging risk factor (imaging_risk_factors), at
    OLDER_PATIENT_AGE or an unknown age, or for chronic pain; the onset is onset[x] only, and every lumbar symptom
    must have one: a recorded date says when the pain was written down, not when it began."""
    t = facts.thresholds
    if "lumbar" not in order.regions or order.modality not in ("MRI", "CT") or facts.prior_surgery:
        return None
    if _order_overrides(order) or facts.neuro_deficit or _radiculopathy(facts) or imaging_risk_factors(facts):
        return None
    if facts.age is None or facts.age >= t.older_patient_age:
        return None
    lumbar = [(entry, ev, member) for entry, ev, member in facts.current_by_vs.get("VS-04", ())
              if "lumbar" in member.attributes.get("region", ()) and not member.has("role", "supporting")]
    if not lumbar or any(m.has("course", "chronic") or e.stated_onset is None for e, _, m in lumbar):
        return None
    onset = min(e.stated_onset for e, _, _ in lumbar if e.stated_onset is not None)
    if onset > facts.now or days_between(onset, facts.now) >= t.early_postop_days:
        return None
    return Finding("imaging-not-indicated", "O2", tuple(ev for _, ev, _ in lumbar), "lumbar",
                   (Suggestion("remove-draft", "delete", deletes=(order.reference,)),),
                   {"onset_days": days_between(onset, facts.now)})


def _radiculopathy(facts: Facts) -> bool:
    return any(item[2].has("subset", "radiculopathy") for item in facts.conditions_by_vs.get("VS-04", ())
               if item[0].current)


def _opioid_rule(facts: Facts, order: OrderItem) -> Finding | None:
    """O4: an opioid order with long-term opioid therapy (F8) or an FBSS state; never in the early post-op window
    unless F8 already holds."""
    t = facts.thresholds
    if is_moud(order.medication, bool(facts.opioid_use_disorder)):
        return None  # treatment of opioid use disorder: never advised against (CDC 2022, recommendation 12)
    therapy = facts.long_term_opioid
    early = facts.post_op_days is not None and facts.post_op_days < t.early_postop_days
    if early and therapy is None:
        return None
    fbss_state = bool(facts.fbss_diagnoses) or any(
        rf.post_op_symptom and (rf.post_op_days is None or rf.post_op_days >= t.persistent_days)
        for rf in facts.regions.values())
    if therapy is None and not fbss_state:
        return None
    evidence: tuple[Evidence, ...] = (*(therapy.evidence if therapy else ()), *facts.fbss_diagnoses)
    if fbss_state and not facts.fbss_diagnoses:
        rf = next(rf for rf in facts.regions.values() if rf.post_op_symptom)
        evidence = (*evidence, rf.last_surgery.evidence, *rf.symptoms)  # type: ignore[union-attr]
    context = "long-term-opioid" if therapy else "fbss"  # worded by the card template (context_labels)
    suggestions, _ = suggestions_for("opioid-long-term", symptomatic_region(facts), facts)
    return Finding("opioid-order", "O4", tuple(dict.fromkeys(evidence)), None, suggestions,
                   {"context": context, "days": therapy.days if therapy else None,
                    "oud_treatment": bool(therapy and therapy.opioid_use_disorder_treatment),
                    "oud_diagnosed": bool(facts.opioid_use_disorder)})
