"""The values the clinical core hands on: evidence, surgeries, suggestions and findings; not changed once built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cds_service.terminology.valuesets import Member, canonical_system

REGIONS = ("lumbar", "cervical", "thoracic")
"""Spine regions, in the order used when a choice has to be made (the specification defaults to lumbar)."""

SYSTEM_LABELS = MappingProxyType({
    "icd10cm": "ICD-10-CM", "icd9cm": "ICD-9-CM", "snomed": "SNOMED CT", "loinc": "LOINC", "rxnorm": "RxNorm",
    "cpt": "CPT", "hcpcs": "HCPCS", "icd10pcs": "ICD-10-PCS", "nucc": "NUCC",
})


# Not frozen, and its __init__ written out: one is built per matched resource per request (see record.py's entries).
@dataclass(slots=True, unsafe_hash=True)
class Evidence:
    """One resource that made a fact true: what it is, its code, its date and (for results) its value."""

    reference: str                  # "Procedure/123" (never shown to the clinician as an identifier)
    what: str                       # what it shows, e.g. "spine surgery", "HbA1c", "cauda equina"
    system: str | None = None       # canonical short name, e.g. "cpt" (SYSTEM_LABELS gives the label)
    code: str | None = None         # the code as the record carries it
    display: str | None = None
    date: datetime | None = None
    value: str | None = None        # e.g. "8.4 %", "BMI 36.2 kg/m2", "7/10"

    def __init__(self, reference: str, what: str, system: str | None = None, code: str | None = None,  # noqa: PLR0917 (the fields, in order)
                 display: str | None = None, date: datetime | None = None, value: str | None = None) -> None:
        self.reference = reference
        self.what = what
        self.system = system
        self.code = code
        self.display = display
        self.date = date
        self.value = value

    @property
    def system_label(self) -> str | None:
        return SYSTEM_LABELS.get(self.system or "", self.system)


@dataclass(frozen=True, slots=True)
class Surgery:
    """An index spine surgery (F1) or diagnosis proving one (F1b, date unknown)."""

    evidence: Evidence
    date: datetime | None
    regions: frozenset[str]
    kinds: frozenset[str]
    from_diagnosis: bool = False


@dataclass(frozen=True, slots=True)
class Suggestion:
    """What a card offers: create an imaging study (a VS-IMG study key) or another order (a template key), and/or
    delete draft orders (`deletes`: their `Type/id`). `reasons`, when given, are the reasonCode of the created order
    (a replacement keeps the draft's reasons); otherwise they come from the finding's evidence."""

    key: str
    kind: str                       # "study", "order" or "delete"
    recommended: bool = False
    optional: bool = False
    priority: str = "routine"
    deletes: tuple[str, ...] = ()
    reasons: tuple[Any, ...] = ()


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass
class Finding:
    """A rule that fired: the card type to show, the evidence behind it and what it suggests.

    `details` holds the numbers and labels a card cites (post-op days, region, cause categories, risk values);
    `omitted` the studies left out because they are already on file (with the evidence of the study).
    """

    card_type: str
    rule: str
    evidence: tuple[Evidence, ...]
    region: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    omitted: tuple[Evidence, ...] = ()

    def __init__(self, card_type: str, rule: str, evidence: tuple[Evidence, ...],  # noqa: PLR0917 (the fields, in order)
                 region: str | None = None, suggestions: tuple[Suggestion, ...] = (),
                 details: Mapping[str, Any] | None = None, omitted: tuple[Evidence, ...] = ()) -> None:
        self.card_type = card_type
        self.rule = rule
        self.evidence = evidence
        self.region = region
        self.suggestions = suggestions
        self.details = details if details is not None else {}
        self.omitted = omitted


def coded_evidence(reference: str, what: str, coding: Mapping[str, Any], member: Member, when: datetime | None,
                   *, value: str | None = None) -> Evidence:
    """Evidence for a resource matched by one of its codings: the coding as recorded, named by the member's display
    when the record gives none."""
    code = coding.get("code")
    display = coding.get("display") if isinstance(coding.get("display"), str) else None
    return Evidence(reference, what, canonical_system(coding.get("system")), code if isinstance(code, str) else None,
                    display or member.display, when, value)
