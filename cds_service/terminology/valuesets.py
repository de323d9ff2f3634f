"""Value sets: loaded from the FHIR ValueSet files beside this module and compiled once into lookup tables (a silent
knowledge version's, when configured, into tables of their own: `Terminology`).

A code matches by `(system, code)`: the system canonicalised (FHIR URIs and the HL7 OIDs of clinical-rules.md; an
unknown system never matches), ICD codes compared upper-cased without dots, and rows marked `match=prefix` matching
every descendant (`M51.36` matches `M51.360`). Each member carries the per-code attributes of its file (region, subset,
kind, role, study, modality, contrast, ...) so the clinical rules read attributes as data instead of branching on codes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import orjson

ATTRIBUTE = "urn:spine-cds:fhir:attribute:"
PROVENANCE = "urn:spine-cds:fhir:provenance"
READ_FROM = "urn:spine-cds:fhir:read-from"
"""The resource types a value set's codes are read from (Condition, Observation, ...): declared in the value set, so a
new one is read where it says, and one that declares nothing is refused at load (it would be silently ignored)."""

# Canonical short names for the code systems the specification uses; FHIR URIs and OIDs both map here.
SYSTEMS: Mapping[str, str] = MappingProxyType({
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10cm",
    "urn:oid:2.16.840.1.113883.6.90": "icd10cm",
    "http://hl7.org/fhir/sid/icd-9-cm": "icd9cm",
    "urn:oid:2.16.840.1.113883.6.103": "icd9cm",
    "urn:oid:2.16.840.1.113883.6.104": "icd9cm",
    "http://snomed.info/sct": "snomed",
    "urn:oid:2.16.840.1.113883.6.96": "snomed",
    "http://loinc.org": "loinc",
    "urn:oid:2.16.840.1.113883.6.1": "loinc",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    "urn:oid:2.16.840.1.113883.6.88": "rxnorm",
    "http://www.ama-assn.org/go/cpt": "cpt",
    "urn:oid:2.16.840.1.113883.6.12": "cpt",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "hcpcs",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "hcpcs",
    "urn:oid:2.16.840.1.113883.6.285": "hcpcs",
    "http://www.cms.gov/Medicare/Coding/ICD10": "icd10pcs",
    "urn:oid:2.16.840.1.113883.6.4": "icd10pcs",
    "http://nucc.org/provider-taxonomy": "nucc",
    "urn:oid:2.16.840.1.113883.6.101": "nucc",
})
_SYSTEMS = dict(SYSTEMS)
_DOTLESS = frozenset({"icd10cm", "icd9cm", "icd10pcs"})
_UPPER = frozenset({"icd10cm", "icd9cm", "icd10pcs", "cpt", "hcpcs"})


def canonical_system(system: Any) -> str | None:
    """The short name of a known code system, or None (unknown systems never match)."""
    if not isinstance(system, str):
        return None
    found = _SYSTEMS.get(system)  # as written, nearly always; a dict, not the read-only view, on the request path
    return found if found is not None else _SYSTEMS.get(system.strip())


def normalise_code(system: str, code: Any) -> str | None:
    """The comparable form of a code: ICD codes upper-cased without dots, CPT/HCPCS upper-cased, others trimmed."""
    if not isinstance(code, str):
        return None
    code = code.strip()
    if system in _UPPER:
        code = code.upper()
    if system in _DOTLESS:
        code = code.replace(".", "")
    return code or None


@dataclass(frozen=True, slots=True)
class Member:
    """One code of a value set with its attributes (every attribute is a tuple of codes)."""

    value_set: str
    system: str
    code: str
    display: str
    attributes: Mapping[str, tuple[str, ...]]
    unverified: bool = False
    prefix: bool = False

    def has(self, name: str, value: str) -> bool:
        return value in self.attributes.get(name, ())

    def first(self, name: str, default: str | None = None) -> str | None:
        values = self.attributes.get(name, ())
        return values[0] if values else default

    @property
    def system_uri(self) -> str:
        return CANONICAL_URIS[self.system]


CANONICAL_URIS: Mapping[str, str] = MappingProxyType({
    "icd10cm": "http://hl7.org/fhir/sid/icd-10-cm", "icd9cm": "http://hl7.org/fhir/sid/icd-9-cm",
    "snomed": "http://snomed.info/sct", "loinc": "http://loinc.org",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm", "cpt": "http://www.ama-assn.org/go/cpt",
    "hcpcs": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "icd10pcs": "http://www.cms.gov/Medicare/Coding/ICD10",
    "nucc": "http://nucc.org/provider-taxonomy",
})


@dataclass(frozen=True)
class ValueSet:
    """A value set and its members. Lookups go through the one index of every value set (`members_for`)."""

    id: str
    title: str
    description: str
    provenance: str
    members: tuple[Member, ...]
    excluded: tuple[tuple[str, str], ...] = ()
    read_from: tuple[str, ...] = ()

    def lookup(self, system: Any, code: Any) -> Member | None:
        """The member a coding matches, most specific first (exact, then the longest prefix)."""
        return next((m for m in members_for(system, code) if m.value_set == self.id), None)

    def match(self, codeable: Any) -> tuple[Mapping[str, Any], Member] | None:
        """The first coding of a CodeableConcept (a dict) that is a member, with its member; None otherwise."""
        return self.first_in(concept_matches(codeable))

    def first_in(self, matches: Matches) -> tuple[Mapping[str, Any], Member] | None:
        """`match` over codings already looked up (`concept_matches`): the first that is a member of this set, with
        the set's most specific member."""
        for coding, members in matches:
            for member in members:
                if member.value_set == self.id:
                    return coding, member
        return None

    def with_attribute(self, name: str, value: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.has(name, value))

    def unverified(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.unverified)


def compile_value_set(resource: Mapping[str, Any]) -> ValueSet:
    """Compile a FHIR ValueSet resource (compose.include with concepts and attribute extensions)."""
    vs_id = resource["id"]
    members: list[Member] = []
    for include in resource.get("compose", {}).get("include", []):
        system = canonical_system(include.get("system"))
        if system is None:
            raise ValueError(f"{vs_id}: unknown code system {include.get('system')!r}")
        for concept in include.get("concept", []):
            attributes: dict[str, list[str]] = {}
            for extension in concept.get("extension", []):
                url = extension.get("url", "")
                if url.startswith(ATTRIBUTE):
                    attributes.setdefault(url[len(ATTRIBUTE):], []).append(extension["valueCode"])
            match = attributes.pop("match", [])
            verification = attributes.pop("verification", [])
            members.append(Member(
                value_set=vs_id,
                system=system,
                code=normalise_code(system, concept["code"]) or "",
                display=concept.get("display", ""),
                attributes=MappingProxyType({k: tuple(v) for k, v in attributes.items()}),
                unverified="unverified" in verification,
                prefix="prefix" in match,
            ))
    excluded = tuple(
        (canonical_system(block.get("system")) or "", concept["code"])
        for block in resource.get("compose", {}).get("exclude", []) for concept in block.get("concept", [])
    )
    provenance = next((e.get("valueString", "") for e in resource.get("extension", [])
                       if e.get("url") == PROVENANCE), "")
    read_from = tuple(e["valueCode"] for e in resource.get("extension", []) if e.get("url") == READ_FROM)
    if not read_from:
        raise ValueError(f"{vs_id}: declares no resource type its codes are read from ({READ_FROM})")
    return ValueSet(
        id=vs_id, title=resource.get("title", vs_id), description=resource.get("description", ""),
        provenance=provenance, members=tuple(members), excluded=excluded, read_from=read_from,
    )


def value_set_files() -> Iterable[Any]:
    folder = resources.files(__package__).joinpath("valuesets")
    return sorted((entry for entry in folder.iterdir() if entry.name.endswith(".json")), key=lambda e: e.name)


MAX_CODE_LENGTH = 64
MAX_SYSTEM_LENGTH = 128


class Terminology:
    """One version of every value set, with its lookup index: the live one (the files beside this module), and, when
    a silent knowledge version is configured (cds_service/silent.py), that version's. The clinical core reads the
    active one (`terminology()`), so the same code evaluates under either.

    `derived` keeps what other modules build from the value sets (ingredient patterns, lookup tables), per version,
    so that nothing built from one version is read under the other."""

    def __init__(self, sets: Mapping[str, ValueSet]) -> None:
        self.sets: Mapping[str, ValueSet] = MappingProxyType(dict(sets))
        self.exact, self.prefixes = _index(self.sets)
        # At most 20,000 short keys, whatever the requests carry (string_members_for keeps long ones out).
        self.string_members: Callable[[str, str], tuple[Member, ...]] = lru_cache(maxsize=20_000)(self._members)
        self._derived: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def derived(self, key: Any, build: Callable[[], Any]) -> Any:
        """What `build` makes from these value sets, built once per version."""
        try:
            return self._derived[key]
        except KeyError:
            with self._lock:
                if key not in self._derived:
                    self._derived[key] = build()
                return self._derived[key]

    def _members(self, system: str, code: str) -> tuple[Member, ...]:
        canonical = canonical_system(system)
        normal = normalise_code(canonical, code) if canonical else None
        if canonical is None or normal is None:
            return ()
        found = list(self.exact.get((canonical, normal), ()))
        for length, table in self.prefixes.get(canonical, ()):
            if len(normal) >= length:
                found.extend(table.get(normal[:length], ()))
        return tuple(found)


def compile_value_sets(files: Iterable[Any]) -> dict[str, ValueSet]:
    """Compile ValueSet files (anything with `read_bytes`), by id."""
    compiled = {}
    for entry in files:
        value_set = compile_value_set(orjson.loads(entry.read_bytes()))
        compiled[value_set.id] = value_set
    return compiled


@cache
def live_terminology() -> Terminology:
    """The project's value sets, compiled once per process (at start-up under gunicorn --preload)."""
    return Terminology(compile_value_sets(value_set_files()))


_ACTIVE: ContextVar[Terminology | None] = ContextVar("cds_service_terminology", default=None)


def terminology() -> Terminology:
    """The value sets in force for this thread's evaluation: the live ones unless `using_terminology` says."""
    active = _ACTIVE.get()
    return active if active is not None else live_terminology()


@contextmanager
def using_terminology(version: Terminology) -> Iterator[None]:
    """Evaluate under `version` (a silent knowledge version's value sets) within the block, in this thread only."""
    token = _ACTIVE.set(version)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def value_sets() -> Mapping[str, ValueSet]:
    """Every value set in force."""
    return terminology().sets


def value_set(vs_id: str) -> ValueSet:
    return terminology().sets[vs_id]


def _index(sets: Mapping[str, ValueSet]) -> tuple[dict[tuple[str, str], tuple[Member, ...]],
                                                   dict[str, tuple[tuple[int, dict], ...]]]:
    """Every value set's members in one exact table and one prefix table per system."""
    exact: dict[tuple[str, str], list[Member]] = {}
    prefixes: dict[str, dict[int, dict[str, list[Member]]]] = {}
    for value_set_ in sets.values():
        for member in value_set_.members:
            if member.prefix:
                prefixes.setdefault(member.system, {}).setdefault(len(member.code), {}).setdefault(
                    member.code, []).append(member)
            else:
                exact.setdefault((member.system, member.code), []).append(member)
    frozen_exact = {key: tuple(members) for key, members in exact.items()}
    frozen_prefixes = {system: tuple(sorted(((length, {code: tuple(ms) for code, ms in table.items()})
                                             for length, table in by_length.items()), key=lambda item: -item[0]))
                       for system, by_length in prefixes.items()}
    return frozen_exact, frozen_prefixes


def prepare_lookup() -> None:
    """Compile the value sets and their lookup index now (at start-up) rather than on the first request."""
    live_terminology()


def members_for(system: Any, code: Any) -> tuple[Member, ...]:
    """Every value-set member a coding matches, across all value sets: exact matches first, then prefix matches from
    the longest prefix down — so the first member of a value set in the result is that set's most specific match.
    Cached by the coding as written: the request path resolves each distinct code once per process."""
    if not isinstance(system, str) or not isinstance(code, str):
        return ()  # checked before the cache, which needs hashable arguments
    return string_members_for(system, code)


def string_members_for(system: str, code: str) -> tuple[Member, ...]:
    """`members_for` for a system and code already known to be strings (the record builder's inner loop). A code or
    system longer than any a value set holds matches nothing, and is not remembered: the cache holds at most
    20,000 short keys, whatever the requests carry."""
    if len(code) > MAX_CODE_LENGTH or len(system) > MAX_SYSTEM_LENGTH:
        return ()
    return terminology().string_members(system, code)


Matches = tuple[tuple[Mapping[str, Any], tuple[Member, ...]], ...]
"""Each coding of a CodeableConcept that is a member of any value set, with its members, in coding order."""


def concept_matches(concept: Any) -> Matches:
    """Every coding of a CodeableConcept that is a member of any of the service's value sets, with its members (in
    coding order): the record keeps this on each entry, so a coding is looked up once per request."""
    if not isinstance(concept, dict):
        return ()
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return ()
    found = []
    for coding in codings:
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                members = string_members_for(system, code)
                if members:
                    found.append((coding, members))
    return tuple(found)
