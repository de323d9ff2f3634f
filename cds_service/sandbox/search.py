"""Answer the FHIR searches prefetch templates name over an in-memory set of resources (sandbox and fixtures only).

Used to build prefetch from fixtures (tests, `cds-service simulate`) and by the sandbox fixtures server; never on the
request path (which renders templates with cds_service.fhir.prefetch.render_template). It supports
what the service's templates and the CDS Hooks query restrictions use: reads (`Type/id`), searches by `patient` /
`subject`, token parameters (`code`, `status`, `clinical-status`, `category`, with `system|code` and comma-separated
OR), and `_count`. It is not a general FHIR server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cds_service.fhir.prefetch import render_template
from cds_service.terminology.valuesets import canonical_system, normalise_code

Resource = dict[str, Any]

_SUBJECT_FIELDS = ("subject", "patient")
_TOKEN_FIELDS = {
    "code": ("code", "procedureCode", "medicationCodeableConcept"),
    "status": ("status",),
    "clinical-status": ("clinicalStatus",),
    "verification-status": ("verificationStatus",),
    "category": ("category",),
}


def _codeable_tokens(value: Any) -> Iterable[tuple[str | None, str]]:
    """(system, code) pairs of a CodeableConcept, a list of them, or a plain code string."""
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, list):
        for item in value:
            yield from _codeable_tokens(item)
    elif isinstance(value, dict):
        for coding in value.get("coding") or ():
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                yield coding.get("system"), coding["code"]


def _token_matches(resource: Resource, parameter: str, wanted: str) -> bool:
    fields = _TOKEN_FIELDS.get(parameter)
    if fields is None:
        return True  # an unsupported parameter does not filter (documented as such)
    have = [pair for field in fields for pair in _codeable_tokens(resource.get(field))]
    for alternative in wanted.split(","):
        system, _, code = alternative.rpartition("|") if "|" in alternative else (None, "", alternative)
        for have_system, have_code in have:
            if system and canonical_system(system) != canonical_system(have_system) and system != have_system:
                continue
            canonical = canonical_system(have_system) or ""
            if normalise_code(canonical, have_code) == normalise_code(canonical, code) or have_code == code:
                return True
    return False


def _references(resource: Resource) -> set[str]:
    refs = set()
    for field in _SUBJECT_FIELDS:
        value = resource.get(field)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            refs.add(value["reference"])
    return refs


def search(resources: Iterable[Resource], resource_type: str, parameters: Iterable[tuple[str, str]]) -> list[Resource]:
    """The resources of `resource_type` matching every parameter."""
    matches = [r for r in resources if r.get("resourceType") == resource_type]
    for name, value in parameters:
        if name in ("patient", "subject"):
            wanted = value if "/" in value else f"Patient/{value}"
            matches = [r for r in matches if wanted in _references(r)]
        elif name.startswith("_"):
            continue  # _count, _sort: paging and order are the caller's concern
        else:
            matches = [r for r in matches if _token_matches(r, name, value)]
    return matches


def searchset(entries: list[Resource], base_url: str = "urn:local") -> Resource:
    """A searchset Bundle of the matches."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": [{"fullUrl": f"{base_url}/{r['resourceType']}/{r.get('id')}", "resource": r,
                   "search": {"mode": "match"}} for r in entries],
    }


def execute(query: str, resources: list[Resource]) -> Resource | None:
    """Answer a relative FHIR URL (`Type/id` read or `Type?params` search) over `resources`."""
    parts = urlsplit(query)
    path = parts.path.strip("/")
    if "/" in path:
        kind, _, ident = path.partition("/")
        return next((r for r in resources if r.get("resourceType") == kind and r.get("id") == ident), None)
    return searchset(search(resources, path, parse_qsl(parts.query, keep_blank_values=True)))


def prefetch_for(templates: Mapping[str, str], context: Mapping[str, Any], resources: list[Resource]) -> dict[str, Any]:
    """Prefetch as a client that satisfies every template would send it (unfillable templates are left out)."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        query = render_template(template, context)
        if query is not None:
            prefetch[key] = execute(query, resources)
    return prefetch
