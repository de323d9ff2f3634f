"""Prefetch resolution: which data the request carries, which the service fetches, and what stays unavailable.

The four cases of a prefetch key (CDS Hooks 2.0, 'Prefetch'): absent — fetch it; `null` — no data, do not fetch;
a resource or Bundle — use it, and fetch its further pages (`next`); an OperationOutcome at top level or as an error
entry, or a resource of another type than the template asks for (a Patient under a search key) — the client failed,
fetch it if possible, and if not the data is unavailable (412 for a required key), never an empty record. A
template whose tokens cannot be filled is not fetched. Fetched data
goes through the same validity filters as prefetched data (it all ends up in the same PatientRecord).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.fhir.client import Failure, FetchPolicy, FhirClient, next_link
from cds_service.fhir.prefetch import render_template
from cds_service.fhir.record import items_of
from cds_service.hooks.request import HookRequest
from cds_service.metrics import BACKFILL_DURATION, count_prefetch_keys, fetch_failure

NO_FHIR_SERVER = Failure("no fhirServer to fetch from", "no-fhir-server")


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass
class Resolution:
    """Usable data per key (a resource, a Bundle, or None for "no data"), and why other keys are unavailable."""

    data: Mapping[str, Any]
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def __init__(self, data: Mapping[str, Any], unavailable: Mapping[str, str] | None = None) -> None:
        self.data = data
        self.unavailable = unavailable if unavailable is not None else {}


def client_failed(value: Any) -> bool:
    """An OperationOutcome, or a Bundle with an error/fatal OperationOutcome entry: the client could not prefetch."""
    if not isinstance(value, dict):
        return False
    if value.get("resourceType") == "OperationOutcome":
        return True
    if value.get("resourceType") == "Bundle":
        for entry in items_of(value.get("entry")):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome" and any(
                    isinstance(i, dict) and i.get("severity") in ("error", "fatal")
                    for i in items_of(resource.get("issue"))):
                return True
    return False


def expected_type(template: str) -> str:
    """The resourceType a template's answer has: the type of a read (`Patient/{{context.patientId}}`), else Bundle."""
    path = template.split("?", 1)[0].strip("/")
    return path.split("/", 1)[0] if "/" in path else "Bundle"


def resolve_prefetch(request: HookRequest, templates: Mapping[str, str], client: FhirClient | None,
                     policy: FetchPolicy) -> Resolution:
    """Data for every template key, fetching from fhirServer what the request lacks (within the policy's deadline)."""
    data: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    to_fetch: dict[str, str] = {}
    first_pages: dict[str, dict[str, Any]] = {}
    for key, template in templates.items():
        present = key in request.prefetch
        value = request.prefetch.get(key)
        if present and value is None:
            data[key] = None  # P3: "no data" — empty, never refetched
            continue
        if value is not None and not client_failed(value) and value.get("resourceType") == expected_type(template):
            more = next_link(value, request.fhir_server or "") if value.get("resourceType") == "Bundle" else None
            if more is None:
                data[key] = value
            else:
                first_pages[key] = value
                to_fetch[key] = more  # P7: the rest of a paged prefetch
            continue
        query = render_template(template, request.context)
        if query is None:
            unavailable[key] = "its prefetch template cannot be filled from the context"
            continue
        to_fetch[key] = query
    count_prefetch_keys("prefetched", sum(1 for v in data.values() if v is not None))
    count_prefetch_keys("empty", sum(1 for v in data.values() if v is None))
    if not to_fetch:
        count_prefetch_keys("unavailable", len(unavailable))
        return Resolution(data, unavailable)

    token = request.fhir_authorization.access_token if request.fhir_authorization else None
    refusal = NO_FHIR_SERVER if not request.fhir_server or client is None else \
        policy.refusal(request.fhir_server, token)
    if refusal:
        fetch_failure(refusal)
        count_prefetch_keys("unavailable", len(unavailable) + len(to_fetch))
        return Resolution(data, {**unavailable, **dict.fromkeys(to_fetch, refusal)})

    with BACKFILL_DURATION.time():
        results = client.fetch_all(request.fhir_server, token, to_fetch, policy)  # type: ignore[union-attr,arg-type]
    for key in to_fetch:
        result = results[key]
        if result.error is not None:
            unavailable[key] = result.error
            fetch_failure(result.error)
        elif key in first_pages:
            merged = dict(first_pages[key])
            rest = result.resource if isinstance(result.resource, dict) else {}
            merged["entry"] = [*items_of(first_pages[key].get("entry")), *items_of(rest.get("entry"))]
            merged.pop("link", None)
            data[key] = merged
        else:
            data[key] = result.resource
    count_prefetch_keys("backfilled", sum(1 for key in to_fetch if key in data))
    count_prefetch_keys("unavailable", len(unavailable))
    return Resolution(data, unavailable)
