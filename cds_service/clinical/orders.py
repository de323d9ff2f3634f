"""Order rules O1-O5 of clinical-rules §4.3: draft orders classified, then judged against the patient's facts.

Pure, like the patient-view rules: the facts are derived from the same PatientRecord, the draft orders are plain
dicts (already parsed by cds_service.hooks.draft_orders), and nothing here reads a clock or performs I/O. A red flag
at order time returns the red-flag card only. At most one card per type; one card lists every order it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.clinical.facts import Facts, opioid_match, regions_in_words
from cds_service.clinical.model import REGIONS, SYSTEM_LABELS, Evidence, Finding, Suggestion
from cds_service.clinical.rules import miss_risk, red_flags, suggestions_for, symptomatic_region
from cds_service.fhir.dates import days_between
from cds_service.fhir.record import codeable_text, items_of
from cds_service.terminology.valuesets import canonical_system, value_set

ORDER_CARD_ORDER = ("red-flag", "imaging-protocol", "imaging-not-indicated", "imaging-duplicate", "opioid-order",
                    "miss-risk")
_SPINE_WORDS = re.compile(r"(?i)\b(spine|spinal|neurosurg\w*)\b")


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
        return OrderItem(reference, "opioid", text)
    return OrderItem(reference, "opioid", _label(coding.get("display") or member.display, "rxnorm", coding.get("code")))


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
    if _is_spine_referral(resource):
        return OrderItem(reference, "spine-surgery",
                         f"Referral: {codeable_text(resource.get('performerType')) or 'spine'}")
    return OrderItem(reference, "other", codeable_text(code) or "service request", reasons=reasons, priority=priority)


def _is_spine_referral(resource: Mapping[str, Any]) -> bool:
    """A referral (VS-REFERRAL 'referral', in code or category) to a spine surgeon (its 'spine-surgeon' specialties,
    or a performer named as spine or neurosurgery)."""
    referrals = value_set("VS-REFERRAL")
    categories = items_of(resource.get("category"))
    is_referral = any(hit is not None and hit[1].has("subset", "referral")
                      for hit in (referrals.match(c) for c in [resource.get("code"), *categories]))
    if not is_referral:
        return False
    performer = resource.get("performerType")
    specialty = referrals.match(performer)
    return (specialty is not None and specialty[1].has("subset", "spine-surgeon")) \
        or bool(_SPINE_WORDS.search(codeable_text(performer)))


def evaluate_order_rules(facts: Facts, orders: Iterable[OrderItem]) -> list[Finding]:
    """Findings for the draft orders under review (all at order-sign, the selected ones at order-select)."""
    orders = list(orders)
    flags = red_flags(facts)
    if flags:
        region = symptomatic_region(facts)
        suggestions, _ = suggestions_for("red-flag", region, facts)
        return [Finding("red-flag", "R1", tuple(flags), region, suggestions,
                        {"findings": tuple(ev.display for ev in flags)})]
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


def _duplicate(facts: Facts, order: OrderItem) -> Finding | None:
    """O3: the same modality and region already on file within IMAGING_SUPPRESS_DAYS (after the last surgery)."""
    on_file = [ev for region in order.regions & set(REGIONS)
               for ev in facts.regions[region].recent_imaging.get(order.modality or "", ())]
    if not on_file:
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
    """O2: lumbar MRI/CT with no surgery, red flag, neuro deficit or radiculopathy; back pain begun < 42 days ago."""
    if "lumbar" not in order.regions or order.modality not in ("MRI", "CT") or facts.prior_surgery:
        return None
    if facts.neuro_deficit or _radiculopathy(facts):
        return None
    onset = facts.regions["lumbar"].symptom_onset
    if onset is None or days_between(onset, facts.now) >= facts.thresholds.early_postop_days:
        return None
    evidence = tuple(ev for ev in facts.regions["lumbar"].symptoms if ev.date is not None)
    return Finding("imaging-not-indicated", "O2", evidence, "lumbar",
                   (Suggestion("remove-draft", "delete", deletes=(order.reference,)),),
                   {"onset_days": days_between(onset, facts.now)})


def _radiculopathy(facts: Facts) -> bool:
    return any(item[2].has("subset", "radiculopathy") for item in facts.conditions_by_vs.get("VS-04", ())
               if item[0].current)


def _opioid_rule(facts: Facts, order: OrderItem) -> Finding | None:
    """O4: an opioid order with long-term opioid therapy (F8) or an FBSS state; never in the early post-op window
    unless F8 already holds."""
    t = facts.thresholds
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
                   {"context": context, "days": therapy.days if therapy else None})
