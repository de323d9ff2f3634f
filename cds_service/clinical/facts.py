"""Facts F1-F17 of clinical-rules §2.3, derived from a PatientRecord at an evaluation instant.

Pure: `derive_facts(record, now, thresholds)` reads no clock and does no I/O. Each fact keeps the evidence (resource,
code, date, value) that made it true, so every card can say why it fired. Codes come only from the value sets, and
their attributes (region, subset, role, kind, study, modality) decide, not Python branches on codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cds_service.clinical.knowledge import Thresholds
from cds_service.clinical.medications import (
    OpioidTherapy,
    analgesic_exposure,
    classify_medications,
    long_term_opioid,
)
from cds_service.clinical.model import REGIONS, Evidence, Surgery, coded_evidence
from cds_service.fhir.dates import days_between
from cds_service.fhir.record import (
    ConditionEntry,
    ObservationEntry,
    OrderOrStudy,
    PatientRecord,
    codeable_text,
    items_of,
)
from cds_service.terminology.valuesets import (
    Member,
    ValueSet,
    terminology,
    value_set,
    value_sets,
)

_REGION_WORDS = (
    ("cervical", re.compile(r"(?i)\b(cervical|neck|c[1-7](-c?[1-7])?)\b")),
    ("thoracic", re.compile(r"(?i)\b(thoracic|dorsal|t1[0-2]|t[1-9])\b")),
    ("lumbar", re.compile(r"(?i)\b(lumbar|lumbosacral|low back|sacral|l[1-5](-[ls]?[1-5])?|l5-s1)\b")),
)
_MODALITY_WORDS = (
    ("MRI", re.compile(r"(?i)\b(mri|mr|magnetic resonance)\b")),
    ("CT", re.compile(r"(?i)\b(ct|computed tomography|cat scan)\b")),
    ("XR", re.compile(r"(?i)\b(x-?ray|xr|radiograph\w*|plain film)\b")),
)


def regions_in_words(words: str) -> frozenset[str]:
    """Spine regions named in free text (body site, code text): the fallback the specification allows."""
    return frozenset(region for region, pattern in _REGION_WORDS if pattern.search(words or ""))


def modality_in_words(words: str) -> str | None:
    found = [modality for modality, pattern in _MODALITY_WORDS if pattern.search(words or "")]
    return found[0] if len(found) == 1 else None


def _matched(vs: ValueSet, entries: Iterable[Any]) -> Iterator[tuple[Any, Mapping[str, Any], Member]]:
    """(entry, coding, member) for each entry whose code is in the value set (as ValueSet.match finds them), from the
    entry's looked-up codings."""
    for entry in entries:
        hit = vs.first_in(entry.matches)
        if hit is not None:
            yield entry, hit[0], hit[1]


@dataclass
class RegionFacts:
    """The facts that depend on a spine region (F1-F6, F10, F16, F17 for that region)."""

    region: str
    surgeries: tuple[Surgery, ...]
    last_surgery: Surgery | None
    post_op_days: int | None
    surgeries_count: int
    symptoms: tuple[Evidence, ...]
    symptom_onset: datetime | None
    structural: tuple[Evidence, ...]
    new_neuro_findings: tuple[Evidence, ...]
    recent_studies: tuple[tuple[Evidence, str, str | None], ...]
    """F16: the studies within IMAGING_SUPPRESS_DAYS after the last surgery, with modality and contrast protocol."""
    post_op_imaging: tuple[Evidence, ...]

    def __init__(self, region: str, surgeries: tuple[Surgery, ...], last_surgery: Surgery | None,  # noqa: PLR0917 (the fields, in order)
                 post_op_days: int | None, surgeries_count: int, symptoms: tuple[Evidence, ...],
                 symptom_onset: datetime | None, structural: tuple[Evidence, ...],
                 new_neuro_findings: tuple[Evidence, ...],
                 recent_studies: tuple[tuple[Evidence, str, str | None], ...],
                 post_op_imaging: tuple[Evidence, ...]) -> None:
        self.region = region
        self.surgeries = surgeries
        self.last_surgery = last_surgery
        self.post_op_days = post_op_days
        self.surgeries_count = surgeries_count
        self.symptoms = symptoms
        self.symptom_onset = symptom_onset
        self.structural = structural
        self.new_neuro_findings = new_neuro_findings
        self.recent_studies = recent_studies
        self.post_op_imaging = post_op_imaging

    def recent_imaging(self, modality: str) -> tuple[Evidence, ...]:
        """F16 for one modality: its studies on file (the suggestions leave that modality out and cite them)."""
        return tuple(ev for ev, kind, _ in self.recent_studies if kind == modality)

    @property
    def prior_surgery(self) -> bool:
        return bool(self.surgeries)

    @property
    def post_op_symptom(self) -> bool:
        """F6: prior surgery in this region and current symptoms in this region."""
        return self.prior_surgery and bool(self.symptoms)


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass
class Facts:
    """Everything the rules read, each with its evidence."""

    now: datetime
    thresholds: Thresholds
    regions: Mapping[str, RegionFacts]
    last_surgery: Surgery | None
    post_op_days: int | None
    fbss_diagnoses: tuple[Evidence, ...]
    neuro_deficit: tuple[Evidence, ...]
    red_flag_conditions: Mapping[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]]
    deformity: tuple[Evidence, ...]
    alt_generators: tuple[Evidence, ...]
    scs_present: tuple[Evidence, ...]
    long_term_opioid: OpioidTherapy | None
    pain_scores: tuple[tuple[float, Evidence], ...]
    care_events: tuple[Evidence, ...]
    analgesic_exposure: tuple[tuple[datetime, datetime, Evidence], ...]
    conditions_by_vs: Mapping[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]] = field(repr=False)
    current_by_vs: Mapping[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]] = field(repr=False)
    """conditions_by_vs, current ones only (clinicalStatus active/recurrence/relapse, not abated)."""
    observations_by_vs: Mapping[str, tuple[tuple[ObservationEntry, Evidence, Member], ...]] = field(repr=False)
    unavailable: frozenset[str] = frozenset()
    age: int | None = None
    """Age in whole years at `now` (Patient.birthDate), None when unknown."""
    neuro_regions: frozenset[str] = frozenset()
    """The spine regions the neuro-deficit codes point to (empty when none names a region)."""
    active_substance_use: tuple[Evidence, ...] = ()
    open_spine_referrals: tuple[Evidence, ...] = ()
    """Active referrals to a spine surgeon already in the chart (a structural work-up under way)."""

    def __init__(self, now: datetime, thresholds: Thresholds, regions: Mapping[str, RegionFacts],  # noqa: PLR0917 (the fields, in order)
                 last_surgery: Surgery | None, post_op_days: int | None,
                 fbss_diagnoses: tuple[Evidence, ...], neuro_deficit: tuple[Evidence, ...],
                 red_flag_conditions: Mapping[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]],
                 deformity: tuple[Evidence, ...], alt_generators: tuple[Evidence, ...],
                 scs_present: tuple[Evidence, ...], long_term_opioid: OpioidTherapy | None,
                 pain_scores: tuple[tuple[float, Evidence], ...], care_events: tuple[Evidence, ...],
                 analgesic_exposure: tuple[tuple[datetime, datetime, Evidence], ...],
                 conditions_by_vs: Mapping[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]],
                 current_by_vs: Mapping[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]],
                 observations_by_vs: Mapping[str, tuple[tuple[ObservationEntry, Evidence, Member], ...]],
                 unavailable: frozenset[str] = frozenset(), age: int | None = None,
                 neuro_regions: frozenset[str] = frozenset(), active_substance_use: tuple[Evidence, ...] = (),
                 open_spine_referrals: tuple[Evidence, ...] = ()) -> None:
        self.now = now
        self.thresholds = thresholds
        self.regions = regions
        self.last_surgery = last_surgery
        self.post_op_days = post_op_days
        self.fbss_diagnoses = fbss_diagnoses
        self.neuro_deficit = neuro_deficit
        self.red_flag_conditions = red_flag_conditions
        self.deformity = deformity
        self.alt_generators = alt_generators
        self.scs_present = scs_present
        self.long_term_opioid = long_term_opioid
        self.pain_scores = pain_scores
        self.care_events = care_events
        self.analgesic_exposure = analgesic_exposure
        self.conditions_by_vs = conditions_by_vs
        self.current_by_vs = current_by_vs
        self.observations_by_vs = observations_by_vs
        self.unavailable = unavailable
        self.age = age
        self.neuro_regions = neuro_regions
        self.active_substance_use = active_substance_use
        self.open_spine_referrals = open_spine_referrals

    @property
    def prior_surgery(self) -> bool:
        return any(region.prior_surgery for region in self.regions.values())

    @property
    def opioid_use_disorder(self) -> tuple[Evidence, ...]:
        """Current opioid use disorder diagnoses (VS-19 subset 'opioid-use-disorder')."""
        return tuple(ev for _, ev, m in self.current_by_vs.get("VS-19", ()) if m.has("subset", "opioid-use-disorder"))

    @property
    def latest_pain(self) -> Evidence | None:
        """The most recent pain score within PAIN_LOOKBACK_DAYS (R11 reads this one)."""
        return self.pain_scores[-1][1] if self.pain_scores else None

    @property
    def latest_pain_value(self) -> float | None:
        return self.pain_scores[-1][0] if self.pain_scores else None

    @property
    def any_symptom(self) -> bool:
        return any(region.symptoms for region in self.regions.values())

    def conservative_care(self, since: datetime | None, *, after_surgery: bool = False) -> tuple[Evidence, ...]:
        """F7: PT, an injection, manipulation, acupuncture, pain psychology, or >= MIN_ANALGESIC_EXPOSURE days of
        analgesics, in the look-back and after `since`. After a surgery (`after_surgery`, `since` its date) only what
        starts EARLY_POSTOP_DAYS after it counts: post-operative analgesia and rehabilitation are part of the
        operation's course, not a trial of conservative care that failed."""
        t = self.thresholds
        start = self.now - timedelta(days=t.conservative_lookback_days)
        if since is not None and after_surgery:
            since = since + timedelta(days=t.early_postop_days)
        if since is not None and since > start:
            start = since
        found = [e for e in self.care_events if e.date is not None and start <= e.date <= self.now]
        exposure = _clipped_union([(max(s, start), min(e, self.now)) for s, e, _ in self.analgesic_exposure])
        exposed_days = sum(days for days in (days_between(s, e) for s, e in exposure) if days > 0)
        if exposed_days >= t.min_analgesic_exposure_days:
            drugs = [ev for s, e, ev in self.analgesic_exposure if e >= start and s <= self.now]
            found.extend(drugs)
        return tuple(found)


def _clipped_union(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def derive_facts(record: PatientRecord, now: datetime, thresholds: Thresholds) -> Facts:
    """All facts for the record at `now`."""
    t = thresholds
    conditions = _conditions_by_value_set(record)
    observations = _observations_by_value_set(record)
    current = {vs: tuple(item for item in items if item[0].current) for vs, items in conditions.items()}

    surgeries = _surgeries(record, conditions)
    symptom_regions = _symptom_regions(current)
    surgeries = tuple(_resolve_region(s, symptom_regions) for s in surgeries)
    last = _last_surgery(surgeries)
    post_op_days = days_between(last.date, now) if last and last.date else None

    pain_scores = _pain_scores(observations, now, t, symptom_regions, last)
    medications = classify_medications(record)
    shared = _Shared(current, conditions, pain_scores, last, _imaging(record), now, t)
    neuro = _neuro_deficit(current, symptom_regions, bool(surgeries))
    regions = {region: _region_facts(region, tuple(s for s in surgeries if region in s.regions), shared)
               for region in REGIONS}

    return Facts(
        now=now,
        thresholds=t,
        regions=regions,
        last_surgery=last,
        post_op_days=post_op_days,
        fbss_diagnoses=tuple(ev for _, ev, m in current.get("VS-02", ()) if m.has("subset", "fbss")),
        neuro_deficit=tuple(ev for ev, _ in neuro),
        red_flag_conditions=_red_flag_conditions(conditions),
        deformity=tuple(ev for _, ev, _m in current.get("VS-09", ())),
        alt_generators=tuple(ev for _, ev, m in current.get("VS-10", ()) if not m.has("role", "supporting")),
        scs_present=_scs_present(record, current),
        long_term_opioid=long_term_opioid(medications, current, now, t),
        pain_scores=tuple((value, ev) for value, ev, _ in pain_scores),
        care_events=_care_events(record),
        analgesic_exposure=analgesic_exposure(medications, now),
        conditions_by_vs=conditions,
        current_by_vs=current,
        observations_by_vs=observations,
        unavailable=record.unavailable,
        age=_age(record, now),
        neuro_regions=_neuro_regions(neuro),
        active_substance_use=tuple(ev for _, ev, m in current.get("VS-21", ()) if m.has("subset", "active")),
        open_spine_referrals=tuple(coded_evidence(e.reference, "spine-surgeon referral", coding, m, e.date)
                                   for e, coding, m in _matched(value_set("VS-REFERRAL"), record.service_requests)
                                   if e.resource.get("status") == "active" and is_spine_referral(e.resource)),
    )


def _age(record: PatientRecord, now: datetime) -> int | None:
    birth = record.birth_date
    if birth is None or birth > now.date():
        return None
    today = now.date()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _neuro_deficit(current: Mapping[str, tuple], symptom_regions: frozenset[str],
                   operated: bool) -> list[tuple[Evidence, Member]]:
    """F11: current VS-06 findings (not the supporting ones); a non-specific one (unsteadiness, gait abnormality,
    generalised weakness) only beside a spine symptom code or a prior spine surgery: alone it says nothing of the
    spine (vestibular unsteadiness, deconditioning)."""
    spine_context = bool(symptom_regions) or operated
    return [(ev, m) for _, ev, m in current.get("VS-06", ())
            if not m.has("role", "supporting") and (spine_context or not m.has("role", "nonspecific"))]


def _neuro_regions(neuro: list[tuple[Evidence, Member]]) -> frozenset[str]:
    """The regions the region-specific deficit codes point to (a code of every region names none)."""
    regions: set[str] = set()
    for _, member in neuro:
        named = member.attributes.get("region", REGIONS)
        if len(named) < len(REGIONS):
            regions |= set(named)
    return frozenset(regions)


_REFERRAL_SPINE_WORDS = re.compile(r"(?i)\b(spine|spinal|neurosurg\w*)\b")


def is_spine_referral(resource: Mapping[str, Any]) -> bool:
    """A referral (VS-REFERRAL 'referral', in code or category) to a spine surgeon (its 'spine-surgeon' specialties,
    or a performer named as spine or neurosurgery): a draft order (O5) or one already open in the chart (R11)."""
    referrals = value_set("VS-REFERRAL")
    categories = items_of(resource.get("category"))
    is_referral = any(hit is not None and hit[1].has("subset", "referral")
                      for hit in (referrals.match(c) for c in [resource.get("code"), *categories]))
    if not is_referral:
        return False
    performer = resource.get("performerType")
    specialty = referrals.match(performer)
    return (specialty is not None and specialty[1].has("subset", "spine-surgeon")) \
        or bool(_REFERRAL_SPINE_WORDS.search(codeable_text(performer)))


def read_from(resource_type: str) -> tuple[str, ...]:
    """The value sets whose codes are read from this resource type, as each declares (valuesets.READ_FROM): a value set
    added with `Condition` is grouped with the conditions without a change here."""
    return terminology().derived(("read_from", resource_type), lambda: tuple(
        vs_id for vs_id, vs in value_sets().items() if resource_type in vs.read_from))


def _by_value_set(entries: Iterable[Any], vs_ids: tuple[str, ...], when: str) -> dict[str, tuple]:
    """(entry, evidence, member) per value set, from each entry's looked-up codings; an entry counts once per value
    set, by its first coding that is a member (as ValueSet.match does)."""
    out: dict[str, list] = {vs_id: [] for vs_id in vs_ids}
    for entry in entries:
        seen: set[str] | None = None
        for coding, members in entry.matches:
            for member in members:
                found = out.get(member.value_set)
                if found is None or (seen is not None and member.value_set in seen):
                    continue
                if seen is None:
                    seen = set()
                seen.add(member.value_set)
                found.append((entry, coded_evidence(entry.reference, member.display, coding, member,
                                               getattr(entry, when)), member))
    return {vs_id: tuple(items) for vs_id, items in out.items()}


def _conditions_by_value_set(record: PatientRecord) -> dict[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]]:
    return _by_value_set(record.conditions, read_from("Condition"), "onset")


def _observations_by_value_set(
        record: PatientRecord) -> dict[str, tuple[tuple[ObservationEntry, Evidence, Member], ...]]:
    dated = [entry for entry in record.observations if entry.effective is not None]
    return _by_value_set(dated, read_from("Observation"), "effective")


def _surgeries(record: PatientRecord, conditions: Mapping[str, tuple]) -> tuple[Surgery, ...]:
    """F1 (index procedures) and, when there is none, F1b (diagnoses proving a prior surgery, date unknown)."""
    vs = value_set("VS-01")
    found = []
    for entry, coding, member in _matched(vs, record.procedures):
        if member.first("role") not in ("index", "addon"):
            continue  # hardware-only removal and too-broad codes are not index surgeries
        regions = frozenset(member.attributes.get("region", REGIONS))
        if len(regions) > 1:
            regions = (regions_in_words(entry.body_site) & regions) or regions
        found.append(Surgery(coded_evidence(entry.reference, "spine surgery", coding, member, entry.performed),
                             entry.performed, regions, frozenset(member.attributes.get("kind", ()))))
    if found:
        return tuple(found)
    return tuple(Surgery(ev, None, frozenset(m.attributes.get("region", REGIONS)), frozenset(), from_diagnosis=True)
                 for _, ev, m in conditions.get("VS-02", ()) if not m.has("role", "supporting"))


def _resolve_region(surgery: Surgery, symptomatic: frozenset[str]) -> Surgery:
    """A surgery whose code spans regions takes the symptomatic one (lumbar first, as the specification defaults)."""
    if len(surgery.regions) <= 1:
        return surgery
    chosen = next((r for r in REGIONS if r in surgery.regions and r in symptomatic), None)
    chosen = chosen or next(r for r in REGIONS if r in surgery.regions)
    return Surgery(surgery.evidence, surgery.date, frozenset({chosen}), surgery.kinds, surgery.from_diagnosis)


def _symptom_regions(current: Mapping[str, tuple]) -> frozenset[str]:
    """Regions with a current (non-supporting) spine-symptom diagnosis."""
    regions: set[str] = set()
    for _, _, member in current.get("VS-04", ()):
        if not member.has("role", "supporting"):
            regions |= set(member.attributes.get("region", ()))
    return frozenset(regions)


_SPINE_SITE = re.compile(r"(?i)\b(spine|spinal|back|vertebra\w*)\b")


def _pain_scores(observations: Mapping[str, tuple], now: datetime, t: Thresholds, symptom_regions: frozenset[str],
                 last: Surgery | None) -> tuple[tuple[float, Evidence, frozenset[str]], ...]:
    """The 0-10 pain scores within PAIN_LOOKBACK_DAYS that are about the spine, oldest first, each with its value and
    the regions it counts for (F4). A score says where it hurts only through its body site: with a spine site it
    counts for that region (a site naming only "back" for the region of the last surgery, else lumbar); with another
    site (a knee) never; without a site, only for regions that already have a current spine diagnosis (VS-04)."""
    since = now - timedelta(days=t.pain_lookback_days)
    default = next(iter(last.regions)) if last and len(last.regions) == 1 else "lumbar"
    scores = []
    for entry, ev, member in observations.get("VS-PAIN", ()):
        if not (member.has("subset", "pain-score") and entry.value is not None and 0 <= entry.value <= 10
                and since <= entry.effective <= now):
            continue
        site = entry.body_site
        if site:
            regions = regions_in_words(site) or (frozenset({default}) if _SPINE_SITE.search(site) else frozenset())
        else:
            regions = symptom_regions
        if regions:
            scores.append((entry.effective, entry.value, ev, regions))
    scores.sort(key=lambda item: item[0])
    return tuple((value, replace(ev, what="pain score", value=f"{value:g}/10"), regions)
                 for _, value, ev, regions in scores)


def _onset_after(entry: ConditionEntry, surgery: Surgery | None) -> bool:
    return surgery is not None and surgery.date is not None and entry.onset is not None and entry.onset > surgery.date


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass
class _Shared:
    """What every region's facts are derived from (built once per evaluation)."""

    current: Mapping[str, tuple]
    conditions: Mapping[str, tuple]
    pain_scores: tuple[tuple[float, Evidence, frozenset[str]], ...]
    overall_last: Surgery | None
    imaging: tuple[tuple[OrderOrStudy, Evidence, str, frozenset[str], str | None], ...]
    now: datetime
    thresholds: Thresholds

    def __init__(self, current: Mapping[str, tuple], conditions: Mapping[str, tuple],  # noqa: PLR0917 (the fields, in order)
                 pain_scores: tuple[tuple[float, Evidence, frozenset[str]], ...], overall_last: Surgery | None,
                 imaging: tuple[tuple[OrderOrStudy, Evidence, str, frozenset[str], str | None], ...],
                 now: datetime, thresholds: Thresholds) -> None:
        self.current = current
        self.conditions = conditions
        self.pain_scores = pain_scores
        self.overall_last = overall_last
        self.imaging = imaging
        self.now = now
        self.thresholds = thresholds


def _last_surgery(surgeries: Iterable[Surgery]) -> Surgery | None:
    """F2: the most recent dated surgery, else an undated one (date unknown), else None."""
    surgeries = tuple(surgeries)
    dated = [s for s in surgeries if s.date is not None]
    if dated:
        return max(dated, key=lambda s: s.date or datetime.min)
    return surgeries[0] if surgeries else None


def _region_facts(region: str, surgeries: tuple[Surgery, ...], shared: _Shared) -> RegionFacts:
    last = _last_surgery(surgeries)
    dated_days = {s.date.date() for s in surgeries if s.date is not None}
    count = len(dated_days) + (1 if surgeries and not dated_days else 0)  # F3: distinct dates (add-ons count once)
    spine, symptoms, onsets = _symptoms(region, surgeries, shared)
    # New or progressing neurological findings after the last surgery (R3, 42-84 days): VS-05 of the region or VS-06.
    new_neuro = [ev for e, ev, m in spine if m.has("subset", "radiculopathy") and _onset_after(e, last)]
    new_neuro += [ev for e, ev, m in shared.current.get("VS-06", ())
                  if not m.has("role", "supporting") and region in m.attributes.get("region", REGIONS)
                  and _onset_after(e, last)]
    studies, post_op = _region_imaging(region, last, shared)
    return RegionFacts(
        region=region, surgeries=surgeries, last_surgery=last,
        post_op_days=days_between(last.date, shared.now) if last and last.date else None, surgeries_count=count,
        symptoms=symptoms, symptom_onset=min(onsets) if onsets else None,
        structural=_structural_causes(region, surgeries, last, shared), new_neuro_findings=tuple(new_neuro),
        recent_studies=studies, post_op_imaging=post_op,
    )


def _symptoms(region: str, surgeries: tuple[Surgery, ...], shared: _Shared) -> tuple[list, tuple[Evidence, ...], list]:
    """F4 / F5: current VS-04 conditions of the region (supporting codes only with another spine code or a surgery),
    and a recent pain score >= PAIN_PRESENT that counts for the region (_pain_scores)."""
    spine = [(e, ev, m) for e, ev, m in shared.current.get("VS-04", ()) if region in m.attributes.get("region", ())]
    supporting_ok = any(not m.has("role", "supporting") for _, _, m in spine) or bool(surgeries)
    counted = [(e, ev) for e, ev, m in spine if supporting_ok or not m.has("role", "supporting")]
    symptoms = [ev for _, ev in counted]
    onsets = [e.onset for e, _ in counted if e.onset is not None]
    # F4: any pain score >= PAIN_PRESENT within the look-back that counts for this region (the latest is cited).
    high = [ev for value, ev, regions in shared.pain_scores
            if value >= shared.thresholds.pain_present_score and region in regions]
    if high:
        symptoms.append(high[-1])
    return spine, tuple(symptoms), onsets


def _structural_causes(region: str, surgeries: tuple[Surgery, ...], last: Surgery | None,
                       shared: _Shared) -> tuple[Evidence, ...]:
    """F10: structural causes in the region after the last surgery; intrinsically post-surgical codes at any date
    when their onset or the surgery date is unknown; adjacent-segment disease only after a fusion."""
    found = []
    fusions = [s.date for s in surgeries if "fusion" in s.kinds and s.date is not None]
    undated = last is not None and last.date is None
    for entry, ev, member in shared.conditions.get("VS-08", ()):
        if region not in member.attributes.get("region", ()):
            continue
        after_last = _onset_after(entry, last)
        postsurgical = member.has("subset", "postsurgical") and (entry.onset is None or undated)
        if member.has("subset", "intrinsic") and (after_last or postsurgical):
            found.append(replace(ev, what="intrinsic"))
        elif member.has("subset", "recurrent-herniation") and after_last:
            found.append(replace(ev, what="recurrent-herniation"))
        elif member.has("subset", "adjacent-segment") and entry.onset is not None \
                and any(entry.onset > fused for fused in fusions):
            found.append(replace(ev, what="adjacent-segment"))
    return tuple(found)


def _region_imaging(region: str, last: Surgery | None, shared: _Shared) -> tuple[
        tuple[tuple[Evidence, str, str | None], ...], tuple[Evidence, ...]]:
    """F16 (each study within IMAGING_SUPPRESS_DAYS, with modality and contrast protocol) and F17 (MRI/CT, any
    time) after the last surgery."""
    studies: list[tuple[Evidence, str, str | None]] = []
    post_op: list[Evidence] = []
    since = shared.now - timedelta(days=shared.thresholds.imaging_suppress_days)
    for entry, ev, modality, img_regions, contrast in shared.imaging:
        if region not in img_regions or entry.date is None or entry.date > shared.now:
            continue
        if last is not None and last.date is not None and entry.date <= last.date:
            continue
        if entry.date >= since:
            studies.append((ev, modality, contrast))
        if last is not None and modality in ("MRI", "CT"):
            post_op.append(ev)
    return tuple(studies), tuple(post_op)


def _imaging(record: PatientRecord) -> tuple[tuple[OrderOrStudy, Evidence, str, frozenset[str], str | None], ...]:
    """Imaging on file (reports, studies, active/completed orders) with modality, region and contrast resolved."""
    vs = value_set("VS-IMG")
    out = []
    for entry, coding, member in _matched(vs, (*record.imaging, *record.service_requests)):
        modality = member.first("modality") or "unknown"
        if modality == "unknown":
            modality = modality_in_words(entry.words) or "unknown"
        regions = frozenset(member.attributes.get("region", ()))
        if len(regions) > 1:
            named = regions_in_words(entry.words) & regions
            if named:
                regions = named
            elif member.first("study") in ("generic-imaging", "mri-spine"):
                continue  # region unknown: never evidence
        if modality == "unknown":
            continue
        what = f"{modality} {'/'.join(sorted(regions))}"
        out.append((entry, coded_evidence(entry.reference, what, coding, member, entry.date), modality, regions,
                    member.first("contrast")))
    return tuple(out)


def _red_flag_conditions(
        conditions: Mapping[str, tuple]) -> dict[str, tuple[tuple[ConditionEntry, Evidence, Member], ...]]:
    """VS-07 conditions (any status: the rules decide what must be current) by subset, with their member (roles)."""
    by_subset: dict[str, list[tuple[ConditionEntry, Evidence, Member]]] = {}
    for entry, ev, member in conditions.get("VS-07", ()):
        for subset in member.attributes.get("subset", ()):
            by_subset.setdefault(subset, []).append((entry, ev, member))
    return {subset: tuple(items) for subset, items in by_subset.items()}


def _scs_present(record: PatientRecord, current: Mapping[str, tuple]) -> tuple[Evidence, ...]:
    """F15: a stimulator in place: a pulse-generator implantation or a current presence code (Z96.82), not cleared by
    a removal dated after it. A lead alone (63650, also the code of a trial) is not a device in place."""
    vs = value_set("VS-18")
    present = [coded_evidence(e.reference, "spinal cord stimulator", coding, member, e.performed)
               for e, coding, member in _matched(vs, record.procedures) if member.has("subset", "generator")]
    present += [ev for _, ev, m in current.get("VS-18", ()) if m.has("subset", "presence")]
    removals = [e.performed for e, _, member in _matched(vs, record.procedures)
                if member.has("subset", "removal") and e.performed is not None]
    if not present or not removals:
        return tuple(present)
    last_removal = max(removals)  # an undated implant or presence code cannot be shown to precede it: kept
    return tuple(ev for ev in present if ev.date is None or ev.date > last_removal)


def _care_events(record: PatientRecord) -> tuple[Evidence, ...]:
    """Conservative care events: completed PT / injection procedures, active/completed PT orders (VS-17)."""
    vs = value_set("VS-17")
    events = [coded_evidence(e.reference, m.first("subset") or "conservative care", coding, m, e.performed)
              for e, coding, m in _matched(vs, record.procedures)]
    events += [coded_evidence(e.reference, "physical-therapy", coding, m, e.date)
               for e, coding, m in _matched(vs, record.service_requests) if m.has("subset", "physical-therapy")]
    return tuple(events)
