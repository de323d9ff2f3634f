"""PatientRecord: the patient's FHIR data as plain values, after the validity filters of clinical-rules §2.2.

Built from prefetch values (searchset Bundles, single resources, `null`) that are already parsed JSON dicts: no
fhir.resources validation runs here (it costs more than the rest of a call: bench/DECISIONS.md). Every accessor is
defensive: a missing or odd field makes an entry unknown or drops it, never raises, and never counts as evidence.
OperationOutcome entries and resources of types the rules do not read are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from cds_service.fhir.dates import add_age, first_datetime, parse_date, parse_datetime, quantity_days
from cds_service.terminology.valuesets import Matches, concept_matches

CONDITION_INVALID_VERIFICATION = frozenset({"refuted", "entered-in-error"})
CONDITION_CURRENT_CLINICAL = frozenset({"active", "recurrence", "relapse"})
OBSERVATION_VALID = frozenset({"final", "amended", "corrected", "preliminary"})
MEDREQ_INVALID = frozenset({"entered-in-error", "draft", "cancelled"})
NO_EXPOSURE_INTENTS = frozenset({"proposal", "plan"})
MEDSTMT_INVALID = frozenset({"entered-in-error", "not-taken", "intended"})
SERVICE_REQUEST_VALID = frozenset({"active", "completed"})
REPORT_VALID = frozenset({"final", "amended", "corrected", "appended", "preliminary", "partial"})

Resource = dict[str, Any]


def _status_code(codeable: Any) -> str | None:
    """The code of a status CodeableConcept (Condition.clinicalStatus / verificationStatus)."""
    if isinstance(codeable, dict):
        for coding in items_of(codeable.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return coding["code"]
    return None


def items_of(value: Any) -> list[Any]:
    """A FHIR array element as a list; a missing or non-array value is empty (never iterated as something else)."""
    return value if isinstance(value, list) else []


def _string_field(resource: Resource, name: str) -> str | None:
    """A FHIR `code` or `string` element (status, intent, conclusion) when it is a string; anything else (a list, an
    object) is absent."""
    value = resource.get(name)
    return value if isinstance(value, str) else None


def _element(resource: Resource, name: str) -> dict[str, Any]:
    """A FHIR complex element (a Period, say) when it is an object; anything else reads as an empty one."""
    value = resource.get(name)
    return value if isinstance(value, dict) else {}


def _status(resource: Resource) -> str | None:
    return _string_field(resource, "status")


def codeable_text(codeable: Any) -> str:
    """Human words of a CodeableConcept: its text and codings' displays (for text fallbacks and card detail)."""
    if not isinstance(codeable, dict):
        return ""
    parts = [codeable.get("text")] + [c.get("display") for c in items_of(codeable.get("coding")) if isinstance(c, dict)]
    return " ".join(p for p in parts if isinstance(p, str))


def _coding_display(coding: Any) -> str:
    """The display of a Coding (ImagingStudy.series.bodySite is a Coding in R4, not a CodeableConcept)."""
    if isinstance(coding, dict):
        return coding["display"] if isinstance(coding.get("display"), str) else codeable_text(coding)
    return ""


def body_site_text(resource: Resource) -> str:
    sites = resource.get("bodySite")
    if isinstance(sites, dict):
        sites = [sites]
    if not isinstance(sites, list):
        return ""
    return " ".join(codeable_text(site) for site in sites)


# Entries (and the other records built for every request, here and in the clinical core) are plain classes, not frozen
# ones, and write their __init__ out. The one the dataclass decorator generates runs interpreted even in a compiled
# module (setup.py's release build; bench/DECISIONS.md), and a frozen dataclass's sets each
# field through object.__setattr__ besides. Nothing assigns to them after __init__.
@dataclass(slots=True)
class ConditionEntry:
    reference: str
    code: Any
    onset: datetime | None        # onset[x] (or birthDate + onsetAge), else recordedDate, else None
    recorded: datetime | None
    current: bool                 # clinicalStatus active/recurrence/relapse (or missing) and not abated by now
    resource: Resource = field(repr=False, compare=False)  # kept for citation; the entry is what was read
    matches: Matches = field(default=(), repr=False, compare=False)  # its code's value-set members
    stated_onset: datetime | None = None  # onset[x] only: what "began N days ago" may be said from (never recordedDate)

    def __init__(self, reference: str, code: Any, onset: datetime | None, recorded: datetime | None, current: bool,  # noqa: PLR0917 (the fields, in order)
                 resource: Resource, matches: Matches = (), stated_onset: datetime | None = None) -> None:
        self.reference = reference
        self.code = code
        self.onset = onset
        self.recorded = recorded
        self.current = current
        self.resource = resource
        self.matches = matches
        self.stated_onset = stated_onset


@dataclass(slots=True)
class ProcedureEntry:
    reference: str
    code: Any
    performed: datetime | None
    body_site: str
    resource: Resource = field(repr=False, compare=False)  # kept for citation; the entry is what was read
    matches: Matches = field(default=(), repr=False, compare=False)  # its code's value-set members

    def __init__(self, reference: str, code: Any, performed: datetime | None, body_site: str, resource: Resource,  # noqa: PLR0917 (the fields, in order)
                 matches: Matches = ()) -> None:
        self.reference = reference
        self.code = code
        self.performed = performed
        self.body_site = body_site
        self.resource = resource
        self.matches = matches


@dataclass(slots=True)
class ObservationEntry:
    reference: str
    code: Any
    effective: datetime | None
    value: float | None           # valueQuantity.value or valueInteger
    unit: str | None
    answer: Any                   # valueCodeableConcept
    resource: Resource = field(repr=False, compare=False)  # kept for citation; the entry is what was read
    matches: Matches = field(default=(), repr=False, compare=False)  # its code's value-set members
    body_site: str = ""           # bodySite words: a pain score counts for the spine only with a spine site (F4)

    def __init__(self, reference: str, code: Any, effective: datetime | None, value: float | None, unit: str | None,  # noqa: PLR0917 (the fields, in order)
                 answer: Any, resource: Resource, matches: Matches = (), body_site: str = "") -> None:
        self.reference = reference
        self.code = code
        self.effective = effective
        self.value = value
        self.unit = unit
        self.answer = answer
        self.resource = resource
        self.matches = matches
        self.body_site = body_site


@dataclass(slots=True)
class MedicationEntry:
    """A MedicationRequest or MedicationStatement with its exposure interval (clinical-rules §2.2)."""

    reference: str
    code: Any                     # medicationCodeableConcept, or the contained Medication's code
    start: datetime | None
    end: datetime | None
    current: bool
    status: str | None
    resource: Resource = field(repr=False, compare=False)  # kept for citation; the entry is what was read

    def __init__(self, reference: str, code: Any, start: datetime | None, end: datetime | None, current: bool,  # noqa: PLR0917 (the fields, in order)
                 status: str | None, resource: Resource) -> None:
        self.reference = reference
        self.code = code
        self.start = start
        self.end = end
        self.current = current
        self.status = status
        self.resource = resource


@dataclass(slots=True)
class OrderOrStudy:
    """A ServiceRequest, DiagnosticReport or ImagingStudy: what was ordered or imaged, and when."""

    reference: str
    code: Any
    date: datetime | None
    words: str                    # body site and text, for regions and modalities of generic codes
    resource: Resource = field(repr=False, compare=False)  # kept for citation; the entry is what was read
    matches: Matches = field(default=(), repr=False, compare=False)  # its code's value-set members

    def __init__(self, reference: str, code: Any, date: datetime | None, words: str, resource: Resource,  # noqa: PLR0917 (the fields, in order)
                 matches: Matches = ()) -> None:
        self.reference = reference
        self.code = code
        self.date = date
        self.words = words
        self.resource = resource
        self.matches = matches


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass
class PatientRecord:
    """The patient's valid resources that the rules can read, by type (a resource with no code of any of the
    service's value sets is left out; a medication, when the builder is told which drugs the rules read). `unavailable`
    names the data that could not be had."""

    birth_date: date | None
    conditions: tuple[ConditionEntry, ...]
    procedures: tuple[ProcedureEntry, ...]
    observations: tuple[ObservationEntry, ...]
    medications: tuple[MedicationEntry, ...]
    service_requests: tuple[OrderOrStudy, ...]
    imaging: tuple[OrderOrStudy, ...]
    unavailable: frozenset[str] = frozenset()

    def __init__(self, birth_date: date | None, conditions: tuple[ConditionEntry, ...],  # noqa: PLR0917 (the fields, in order)
                 procedures: tuple[ProcedureEntry, ...], observations: tuple[ObservationEntry, ...],
                 medications: tuple[MedicationEntry, ...],
                 service_requests: tuple[OrderOrStudy, ...], imaging: tuple[OrderOrStudy, ...],
                 unavailable: frozenset[str] = frozenset()) -> None:
        self.birth_date = birth_date
        self.conditions = conditions
        self.procedures = procedures
        self.observations = observations
        self.medications = medications
        self.service_requests = service_requests
        self.imaging = imaging
        self.unavailable = unavailable

    @property
    def size(self) -> int:
        return (len(self.conditions) + len(self.procedures) + len(self.observations) + len(self.medications)
                + len(self.service_requests) + len(self.imaging))


def resources_in(value: Any) -> list[Resource]:
    """The resources in a prefetch value: a Bundle's entries (OperationOutcomes skipped), a single resource, or none.
    A list, not a generator: this runs for every resource of every request."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [resource for entry in items_of(value.get("entry")) if isinstance(entry, dict)
                and isinstance(resource := entry.get("resource"), dict)
                and isinstance(kind := resource.get("resourceType"), str) and kind != "OperationOutcome"]
    return [] if value.get("resourceType") in (None, "OperationOutcome") else [value]


# Resource types the rules read only through value-set codes (medications also match by ingredient name in text:
# which of them the rules read is the clinical core's to say, through `reads_medication`).
_CODED_ONLY = frozenset({"Condition", "Procedure", "Observation", "ServiceRequest", "DiagnosticReport",
                         "ImagingStudy"})
_MEDICATIONS = frozenset({"MedicationRequest", "MedicationStatement"})


def _other_known_code(resource: Resource) -> bool:
    """Whether an ImagingStudy procedureCode or an Observation component has a code of the service's value sets."""
    procedure_codes = resource.get("procedureCode")
    if isinstance(procedure_codes, list) and any(concept_matches(c) for c in procedure_codes):
        return True
    components = resource.get("component")
    return isinstance(components, list) and any(isinstance(c, dict) and concept_matches(c.get("code"))
                                                for c in components)


def build_record(resources: Iterable[Resource], now: datetime, unavailable: Iterable[str] = (),
                 default_supply_days: int = 30,
                 reads_medication: Callable[[Any], bool] | None = None) -> PatientRecord:
    """Sort resources by type, drop invalid ones (§2.2) and read their dates. Duplicates (same Type/id) count once.

    `reads_medication`, given a medication's concept, says whether any rule reads that drug (the clinical core's
    `reads_medication`); the others are left out before their dates and supply are read. Most of a medication list
    is neither an opioid nor an analgesic (four in five in bench/'s patients). Without it every medication is kept.
    """
    seen: set[str] = set()
    by_type: dict[str, list[tuple[str, Resource, Matches]]] = {}
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict):
            continue
        kind = resource.get("resourceType")
        if not isinstance(kind, str):
            continue
        rid = resource.get("id")
        reference = f"{kind}/{rid}" if isinstance(rid, str) and rid else f"{kind}/#{index}"
        if reference in seen:
            continue
        seen.add(reference)
        matches: Matches = ()
        if kind in _CODED_ONLY:
            matches = concept_matches(resource.get("code"))
            if not matches and not _other_known_code(resource):
                continue  # no rule can ever read it: skip the work of reading its dates (most of a real chart)
        elif kind in _MEDICATIONS and reads_medication is not None and not reads_medication(medication_code(resource)):
            continue
        group = by_type.get(kind)
        if group is None:
            by_type[kind] = [(reference, resource, matches)]
        else:
            group.append((reference, resource, matches))

    patients = by_type.get("Patient", [])
    birth = parse_date(patients[0][1].get("birthDate")) if patients else None
    supply = timedelta(days=default_supply_days)
    return PatientRecord(
        birth_date=birth,
        conditions=tuple(c for r, res, m in by_type.get("Condition", []) if (c := _condition(r, res, m, birth, now))),
        procedures=tuple(p for r, res, m in by_type.get("Procedure", []) if (p := _procedure(r, res, m, birth))),
        observations=tuple(o for r, res, m in by_type.get("Observation", []) for o in _observations(r, res, m)),
        medications=tuple(
            [q for r, res, _ in by_type.get("MedicationRequest", []) if (q := _medication_request(r, res, supply))]
            + [st for r, res, _ in by_type.get("MedicationStatement", []) if (st := _medication_statement(r, res, now))]
        ),
        service_requests=tuple(o for r, res, m in by_type.get("ServiceRequest", [])
                               if (o := _service_request(r, res, m))),
        imaging=tuple(
            [d for r, res, m in by_type.get("DiagnosticReport", []) if (d := _report(r, res, m))]
            + [i for r, res, _ in by_type.get("ImagingStudy", []) if (i := _imaging_study(r, res))]
        ),
        unavailable=frozenset(unavailable),
    )


def _condition(reference: str, resource: Resource, matches: Matches, birth: date | None,
               now: datetime) -> ConditionEntry | None:
    if _status_code(resource.get("verificationStatus")) in CONDITION_INVALID_VERIFICATION:
        return None
    period = _element(resource, "onsetPeriod")
    onset = (first_datetime(resource.get("onsetDateTime"), period.get("start"))
             or add_age(birth, resource.get("onsetAge")))
    recorded = parse_datetime(resource.get("recordedDate"))
    clinical = _status_code(resource.get("clinicalStatus"))
    abatement = _abatement(resource, birth)
    current = (clinical is None or clinical in CONDITION_CURRENT_CLINICAL) and not (abatement and abatement <= now)
    return ConditionEntry(reference, resource.get("code"), onset or recorded, recorded, current, resource, matches,
                          onset)


def _abatement(resource: Resource, birth: date | None) -> datetime | None:
    period = _element(resource, "abatementPeriod")
    return (first_datetime(resource.get("abatementDateTime"), period.get("end"), period.get("start"))
            or add_age(birth, resource.get("abatementAge")))


def _procedure(reference: str, resource: Resource, matches: Matches, birth: date | None) -> ProcedureEntry | None:
    if _status(resource) != "completed":
        return None
    period = _element(resource, "performedPeriod")
    performed = (first_datetime(resource.get("performedDateTime"), period.get("end"), period.get("start"))
                 or add_age(birth, resource.get("performedAge")))
    return ProcedureEntry(reference, resource.get("code"), performed, body_site_text(resource), resource, matches)


def _observations(reference: str, resource: Resource, matches: Matches) -> list[ObservationEntry]:
    """The observation, and each coded component with a value (the PEG panel's pain item is a component)."""
    status = resource.get("status")
    if not isinstance(status, str) or status not in OBSERVATION_VALID or resource.get("dataAbsentReason"):
        return []
    period = resource.get("effectivePeriod")
    if not isinstance(period, dict):
        period = {}
    effective = first_datetime(resource.get("effectiveDateTime"), period.get("end"), period.get("start"),
                               resource.get("effectiveInstant"), resource.get("issued"))
    entries = [_observation_value(reference, resource, effective, resource, matches)]
    components = resource.get("component")
    if isinstance(components, list):
        entries += [_observation_value(reference, component, effective, resource,
                                       concept_matches(component.get("code")))
                    for component in components
                    if isinstance(component, dict) and not component.get("dataAbsentReason")]
    return entries


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # a tuple: faster than a union


def _observation_value(reference: str, holder: Resource, effective: datetime | None, resource: Resource,
                       matches: Matches) -> ObservationEntry:
    """An entry for the observation or one of its components (`holder`): its code, value and unit."""
    value: float | None = None
    unit: str | None = None
    quantity = holder.get("valueQuantity")
    if isinstance(quantity, dict) and _number(quantity.get("value")):
        value = float(quantity["value"])
        # Read into an untyped name first: compiled, `unit` (str | None) refuses anything else when assigned.
        written = quantity.get("code") or quantity.get("unit")
        unit = written if isinstance(written, str) else None
    elif isinstance(holder.get("valueInteger"), int) and not isinstance(holder.get("valueInteger"), bool):
        value = float(holder["valueInteger"])
    return ObservationEntry(reference, holder.get("code"), effective, value, unit, holder.get("valueCodeableConcept"),
                            resource, matches, body_site_text(resource))


def medication_code(resource: Resource) -> Any:
    """medicationCodeableConcept, or the code of a Medication referenced as `#id` among `contained`."""
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return concept
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(target, str) and target.startswith("#"):
        for contained in items_of(resource.get("contained")):
            if isinstance(contained, dict) and contained.get("resourceType") == "Medication" \
                    and contained.get("id") == target[1:]:
                return contained.get("code")
    if isinstance(ref, dict) and isinstance(ref.get("display"), str):
        return {"text": ref["display"]}
    return None


def _medication_request(reference: str, resource: Resource, default_supply: timedelta) -> MedicationEntry | None:
    status = _status(resource)
    if status is None or status in MEDREQ_INVALID:
        return None
    bounds: dict[str, Any] = {}
    dosage = resource.get("dosageInstruction")
    if isinstance(dosage, list) and dosage and isinstance(dosage[0], dict):
        timing = dosage[0].get("timing")
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
            bounds = repeat["boundsPeriod"]
    start = first_datetime(resource.get("authoredOn"), bounds.get("start"))
    end = None
    intent = _string_field(resource, "intent")
    if intent in NO_EXPOSURE_INTENTS:
        start = None  # a proposal or plan is a suggestion nobody acted on: no evidence a drug was taken
    if start is not None:
        dispense = resource.get("dispenseRequest")
        supply_days = quantity_days(dispense.get("expectedSupplyDuration")) if isinstance(dispense, dict) else None
        if supply_days is not None:
            end = start + timedelta(days=supply_days)
        else:
            end = parse_datetime(bounds.get("end")) or start + default_supply
    current = status == "active" and intent != "proposal"
    return MedicationEntry(reference, medication_code(resource), start, end, current, status, resource)


def _medication_statement(reference: str, resource: Resource, now: datetime) -> MedicationEntry | None:
    status = _status(resource)
    if status is None or status in MEDSTMT_INVALID:
        return None
    period = resource.get("effectivePeriod") if isinstance(resource.get("effectivePeriod"), dict) else None
    if period is not None:
        start = parse_datetime(period.get("start"))
        end = parse_datetime(period.get("end"))
        open_ended = end is None
        end = end or (now if status == "active" else start)
    else:
        start = parse_datetime(resource.get("effectiveDateTime"))
        open_ended = True
        end = now if status == "active" else start
    current = status == "active" and (open_ended or (end is not None and end >= now))
    return MedicationEntry(reference, medication_code(resource), start, end, current, status, resource)


def _words(resource: Resource) -> str:
    return f"{body_site_text(resource)} {codeable_text(resource.get('code'))}".strip()


def _service_request(reference: str, resource: Resource, matches: Matches) -> OrderOrStudy | None:
    if _status(resource) not in SERVICE_REQUEST_VALID:
        return None
    period = _element(resource, "occurrencePeriod")
    when = first_datetime(resource.get("occurrenceDateTime"), period.get("start"), resource.get("authoredOn"))
    return OrderOrStudy(reference, resource.get("code"), when, _words(resource), resource, matches)


def _report(reference: str, resource: Resource, matches: Matches) -> OrderOrStudy | None:
    if _status(resource) not in REPORT_VALID:
        return None
    period = _element(resource, "effectivePeriod")
    when = first_datetime(resource.get("effectiveDateTime"), period.get("end"), period.get("start"),
                          resource.get("issued"))
    words = f"{_words(resource)} {_string_field(resource, 'conclusion') or ''}"
    return OrderOrStudy(reference, resource.get("code"), when, words.strip(), resource, matches)


def _imaging_study(reference: str, resource: Resource) -> OrderOrStudy | None:
    if _status(resource) != "available":
        return None
    # ImagingStudy has no single code: its procedureCode CodeableConcepts are merged into one for matching.
    merged = {"coding": [c for p in items_of(resource.get("procedureCode")) if isinstance(p, dict)
                         for c in items_of(p.get("coding"))]}
    words = " ".join([codeable_text(p) for p in items_of(resource.get("procedureCode")) if isinstance(p, dict)]
                     + [_string_field(resource, "description") or ""]
                     + [_coding_display(s.get("bodySite")) for s in items_of(resource.get("series"))
                        if isinstance(s, dict)])
    return OrderOrStudy(reference, merged, parse_datetime(resource.get("started")), words.strip(), resource,
                        concept_matches(merged))
