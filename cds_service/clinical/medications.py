"""Medication facts: which drugs are opioids (VS-19) or other analgesics (VS-20), by code or by an ingredient named
in the text; long-term opioid therapy (F8) and medication for opioid use disorder; non-opioid analgesic exposure (F7).

Split from facts.py, which reads them: a drug is classified once per distinct concept (per value-set version), and
the rest of a medication list, neither kind, is left out of the record before its dates are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from cds_service.clinical.knowledge import Thresholds
from cds_service.clinical.model import Evidence, coded_evidence
from cds_service.fhir.dates import days_between
from cds_service.fhir.record import MedicationEntry, PatientRecord, codeable_text
from cds_service.terminology.valuesets import Member, terminology, value_set


@dataclass(frozen=True)
class OpioidTherapy:
    """F8: long-term opioid therapy, with the records of the continuous exposure (or the Z79.891 diagnosis)."""

    evidence: tuple[Evidence, ...]
    days: int | None
    opioid_use_disorder_treatment: bool


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
_Hit = tuple[Mapping[str, Any] | None, Member | None]
_OpioidHit = tuple[Mapping[str, Any] | None, Member]  # an opioid is always matched to a member


def opioid_match(concept: Any) -> _OpioidHit | None:
    """An opioid medication concept: by code (VS-19 products or ingredients), else by an ingredient named in its text
    (then the coding is None). Used for medication records (F7, F8) and for draft orders (O4)."""
    return _drug_class(_concept_key(concept))[0]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _concept_key(concept: Any) -> tuple | None:
    """What classification reads of a CodeableConcept (its text and each coding's system, code and display), as a
    hashable key. Values are kept as written (the readers ignore what is not a string); a value that cannot be
    hashed (an object or array where a string belongs) is read as absent."""
    if not isinstance(concept, dict):
        return None
    codings = concept.get("coding")
    key = (concept.get("text"),
           tuple([(c.get("system"), c.get("code"), c.get("display")) for c in codings if isinstance(c, dict)])
           if isinstance(codings, list) else ())
    try:
        hash(key)
    except TypeError:
        return (_text(key[0]), tuple((_text(s), _text(c), _text(d)) for s, c, d in key[1]))
    return key


_CACHED_KEY_CHARS = 512  # a concept longer than this (in its strings) is classified every time, not remembered


def _drug_class(key: tuple | None) -> tuple[_OpioidHit | None, _Hit | None]:
    """`_classify_drug`, remembered for the concepts charts repeat. Only short keys are kept, so the cache holds at
    most 4,096 keys of 512 characters whatever the requests carry."""
    if key is not None and _key_chars(key) > _CACHED_KEY_CHARS:
        return _classify_drug(key)
    return drug_class_cache()(key)


def drug_class_cache() -> Callable[[tuple | None], tuple[_OpioidHit | None, _Hit | None]]:
    """`_classify_drug` remembered, one cache per value-set version (a silent version classifies with its own)."""
    return terminology().derived("drug-class", lambda: lru_cache(maxsize=4096)(_classify_drug))


def _key_chars(key: tuple) -> int:
    text, codings = key
    total = len(text) if isinstance(text, str) else 0
    for coding in codings:
        for value in coding:
            if isinstance(value, str):
                total += len(value)
    return total


def _classify_drug(key: tuple | None) -> tuple[_OpioidHit | None, _Hit | None]:
    """(opioid hit, non-opioid analgesic hit) for a medication concept, each as (coding or None when matched by an
    ingredient named in the text, member). Depends on the concept only, so it is remembered per distinct concept:
    charts repeat the same drugs, and most of a medication list is neither kind."""
    if key is None:
        return None, None
    text, codings = key
    concept = {"text": text, "coding": [{"system": s, "code": c, "display": d} for s, c, d in codings]}
    hit = value_set("VS-19").match(concept)
    if hit is not None and (hit[1].has("subset", "product") or hit[1].has("subset", "ingredient")):
        return hit, None
    words = codeable_text(concept)
    member = _ingredient_by_name("VS-19", words)
    if member is not None:
        return (None, member), None
    hit = value_set("VS-20").match(concept)
    if hit is not None:
        return None, hit
    return None, ((None, None) if _ingredient_by_name("VS-20", words) is not None else None)


def reads_medication(concept: Any) -> bool:
    """Whether a rule reads a medication with this concept: an opioid or another analgesic, by code or by an
    ingredient named in its text (F7, F8). Any other drug is never evidence, so the record can leave it out."""
    return _drug_class(_concept_key(concept)) != (None, None)


def _classifiedcoded_evidence(entry: MedicationEntry, what: str, hit: _Hit) -> Evidence:
    coding, member = hit
    if coding is None or member is None:
        return Evidence(entry.reference, what, None, None, codeable_text(entry.code), entry.start)
    return coded_evidence(entry.reference, what, coding, member, entry.start)


_WORD = re.compile(r"\w+")
_MEDICATION_VALUE_SETS = ("VS-19", "VS-20")  # opioids and other analgesics, also read by ingredient name


def _ingredient_patterns(vs_id: str) -> tuple[frozenset[str] | None, tuple[tuple[re.Pattern[str], Member], ...]]:
    """Whole-word ingredient names of a medication value set (`\\bcodeine\\b` does not match dihydrocodeine), with
    the first word of each name: a text holding none of those words names no ingredient, and most texts (every
    non-opioid drug's) are passed over with one set lookup instead of a search per name. Built once per value-set
    version."""
    return terminology().derived(("ingredients", vs_id), lambda: _compile_ingredient_patterns(vs_id))


def _compile_ingredient_patterns(vs_id: str) -> tuple[frozenset[str] | None,
                                                      tuple[tuple[re.Pattern[str], Member], ...]]:
    names = [(name, member) for member in value_set(vs_id).with_attribute("subset", "ingredient")
             if (name := member.first("ingredient"))]
    first_words = {words[0] for name, _ in names if (words := _WORD.findall(name.lower())) and name[0].isalnum()}
    usable = len(first_words) > 0 and all(name[:1].isalnum() for name, _ in names)
    return (frozenset(first_words) if usable else None,
            tuple((re.compile(rf"(?i)\b{re.escape(name)}\b"), member) for name, member in names))


def prepare_ingredient_patterns() -> None:
    """Compile the ingredient-name patterns of the medication value sets now (at start-up): the first request that
    reads a medication by its text would otherwise compile a few dozen regular expressions."""
    for vs_id in _MEDICATION_VALUE_SETS:
        _ingredient_patterns(vs_id)
    drug_class_cache()


def _ingredient_by_name(vs_id: str, text: str) -> Member | None:
    """The text fallback for a medication without a known code: an ingredient named in its text or display (the
    first member, in value-set order, whose name the text holds)."""
    if not text:
        return None
    first_words, patterns = _ingredient_patterns(vs_id)
    if first_words is not None and first_words.isdisjoint(_WORD.findall(text.lower())):
        return None
    return next((member for pattern, member in patterns if pattern.search(text)), None)


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass(slots=True)
class Medication:
    """A medication record classified once: as an opioid (VS-19, with its member), else as a non-opioid analgesic."""

    entry: MedicationEntry
    opioid: tuple[Evidence, Member | None] | None
    analgesic: Evidence | None

    def __init__(self, entry: MedicationEntry, opioid: tuple[Evidence, Member | None] | None,
                 analgesic: Evidence | None) -> None:
        self.entry = entry
        self.opioid = opioid
        self.analgesic = analgesic


def classify_medications(record: PatientRecord) -> tuple[Medication, ...]:
    classified = []
    for entry in record.medications:
        opioid, analgesic = _drug_class(_concept_key(entry.code))
        if opioid is not None:
            classified.append(Medication(entry, (_classifiedcoded_evidence(entry, "opioid", opioid), opioid[1]), None))
        elif analgesic is not None:
            classified.append(Medication(entry, None, _classifiedcoded_evidence(entry, "analgesic", analgesic)))
    return tuple(classified)


def _moud_ingredients() -> frozenset[str]:
    return terminology().derived("moud", lambda: frozenset(
        name for member in value_set("VS-19").with_attribute("moud", "with-opioid-use-disorder")
        if (name := member.first("ingredient"))))


def is_moud(member: Member | None, opioid_use_disorder: bool) -> bool:
    """Medication for opioid use disorder (MOUD): buprenorphine with naloxone or sublingual buprenorphine (VS-19
    'oud-treatment'), or any buprenorphine or methadone product (VS-19 ingredients marked 'moud') for a patient with
    opioid use disorder on the problem list. It treats the disorder: it is never counted as opioid therapy for pain,
    and never advised against (CDC 2022, recommendation 12)."""
    if member is None:
        return False
    return member.has("subset", "oud-treatment") or (
        opioid_use_disorder and member.first("ingredient") in _moud_ingredients())


def long_term_opioid(medications: tuple[Medication, ...], current: Mapping[str, tuple], now: datetime,
                      t: Thresholds) -> OpioidTherapy | None:
    """F8: a current opioid record in a continuous exposure (gaps <= OPIOID_CHAIN_GAP_DAYS) of >= 90 days,
    or a current Z79.891 (long-term opiate use) diagnosis. MOUD records (`is_moud`) are not opioid therapy for pain:
    they only set `opioid_use_disorder_treatment` (when current)."""
    disorder = any(m.has("subset", "opioid-use-disorder") for _, _, m in current.get("VS-19", ()))
    exposures = []
    oud = False
    for medication in medications:
        entry, found = medication.entry, medication.opioid
        if found is None or entry.start is None or entry.end is None or entry.start > now:
            continue
        evidence, member = found
        if is_moud(member, disorder):
            oud = oud or entry.current
            continue
        exposures.append((entry.start, min(entry.end, now), entry.current, evidence))
    chain_start = None
    chain_evidence: list[Evidence] = []
    gap = timedelta(days=t.opioid_chain_gap_days)
    chains: list[tuple[datetime, datetime, bool, list[Evidence]]] = []
    for start, end, is_current, evidence in sorted(exposures, key=lambda x: x[0]):
        if chains and start - chains[-1][1] <= gap:
            s, e, c, evs = chains[-1]
            chains[-1] = (s, max(e, end), c or is_current, [*evs, evidence])
        else:
            chains.append((start, end, is_current, [evidence]))
    for start, _end, has_current, evs in chains:
        long_enough = has_current and days_between(start, now) >= t.long_term_opioid_days
        if long_enough and (chain_start is None or start < chain_start):
            chain_start, chain_evidence = start, evs
    if chain_start is not None:
        return OpioidTherapy(tuple(chain_evidence), days_between(chain_start, now), oud)
    diagnoses = [ev for _, ev, m in current.get("VS-19", ()) if m.has("subset", "long-term-use")]
    if diagnoses:
        return OpioidTherapy(tuple(diagnoses), None, oud)
    return None


def analgesic_exposure(medications: tuple[Medication, ...],
                        now: datetime) -> tuple[tuple[datetime, datetime, Evidence], ...]:
    """Exposure intervals of non-opioid analgesics (VS-20): the medicines a trial of conservative care is made of
    (Errata 6). Opioids are not: a course of opioids is a risk to address, never the failed conservative care that
    makes a revision referral or a chronic-pain work-up fire (Errata 9)."""
    out = []
    for medication in medications:
        entry, evidence = medication.entry, medication.analgesic
        if entry.start is None or entry.end is None or evidence is None:
            continue
        out.append((entry.start, min(entry.end, now), evidence))
    return tuple(out)
