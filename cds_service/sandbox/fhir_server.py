"""`cds-service fixtures-server`: the fixture patients as a read-only FHIR R4 REST endpoint, for sandbox use only.

It serves what the service's backfill and the public CDS Hooks Sandbox ask of a FHIR server: `GET /metadata`,
`GET /{type}/{id}`, searches by `patient`/`subject`, `code`, `clinical-status`, `status`, `category` (with `_count`
and `next` links), `POST /{type}/_search` with a form body, and `GET /Patient` listing the patients — with CORS on
everything. It is a test double, not a FHIR server for production: no authentication, no writes, no history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, request
from flask_cors import CORS

from cds_service import jsonio
from cds_service.fixtures import load_fixtures
from cds_service.sandbox.search import search

FHIR_JSON = "application/fhir+json"
DEFAULT_PAGE = 50


def _resources(folder: str | Path | None, at: datetime) -> list[dict[str, Any]]:
    """Every fixture's resources, dates rolled to `at` (fixture resource ids are unique across fixtures)."""
    return [resource for fixture in load_fixtures(folder) for resource in fixture.resources(at)]


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(jsonio.dumps(body), status=status, mimetype=FHIR_JSON)


def _outcome(status: int, code: str, diagnostics: str) -> Response:
    return _answer({"resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]}, status)


def capability_statement(types: list[str]) -> dict[str, Any]:
    params = [{"name": name, "type": kind} for name, kind in (
        ("patient", "reference"), ("subject", "reference"), ("code", "token"), ("status", "token"),
        ("clinical-status", "token"), ("category", "token"), ("_count", "number"))]
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2025-06-01", "kind": "instance",
        "software": {"name": "cds-service fixtures server (sandbox use only)"},
        "implementation": {"description": "Synthetic FBSS/MISS fixture patients, read-only"},
        "fhirVersion": "4.0.1", "format": ["json"],
        "rest": [{"mode": "server", "resource": [
            {"type": kind, "interaction": [{"code": "read"}, {"code": "search-type"}],
             "searchParam": params if kind != "Patient" else [{"name": "_count", "type": "number"}]}
            for kind in types]}],
    }


def create_fixtures_server(folder: str | Path | None = None, at: datetime | None = None) -> Flask:
    """The FHIR app over the fixtures, rolled to `at` (default: today at noon UTC)."""
    when = at or datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    resources = _resources(folder, when)
    types = sorted({r["resourceType"] for r in resources})
    app = Flask("cds_service.fixtures_server")
    CORS(app, origins="*", allow_headers=["Authorization", "Content-Type", "Accept"], allow_private_network=True)

    @app.get("/metadata")
    def metadata() -> Response:
        return _answer(capability_statement(types))

    @app.get("/<resource_type>/<resource_id>")
    def read(resource_type: str, resource_id: str) -> Response:
        found = next((r for r in resources if r["resourceType"] == resource_type and r.get("id") == resource_id),
                     None)
        if found is None:
            return _outcome(404, "not-found", f"{resource_type}/{resource_id} is not in the fixtures")
        return _answer(found)

    @app.get("/<resource_type>")
    def search_get(resource_type: str) -> Response:
        return _search(resource_type, list(request.args.items(multi=True)))

    @app.post("/<resource_type>/_search")
    def search_post(resource_type: str) -> Response:
        return _search(resource_type, list(request.form.items(multi=True)) + list(request.args.items(multi=True)))

    def _search(resource_type: str, params: list[tuple[str, str]]) -> Response:
        if resource_type not in types:
            return _outcome(404, "not-supported", f"{resource_type} is not served here")
        matches = search(resources, resource_type, params)
        values = dict(params)
        try:
            count = max(1, min(int(values.get("_count", DEFAULT_PAGE)), 500))
            offset = max(0, int(values.get("_offset", 0)))
        except ValueError:
            return _outcome(400, "invalid", "_count and _offset must be numbers")
        page = matches[offset:offset + count]
        base = request.url_root.rstrip("/")
        bundle: dict[str, Any] = {
            "resourceType": "Bundle", "type": "searchset", "total": len(matches),
            "link": [{"relation": "self", "url": request.url}],
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in page],
        }
        if offset + count < len(matches):
            kept = [(k, v) for k, v in params if k not in ("_offset", "_count")]
            query = urlencode([*kept, ("_count", str(count)), ("_offset", str(offset + count))])
            bundle["link"].append({"relation": "next", "url": f"{base}/{resource_type}?{query}"})
        return _answer(bundle)

    return app
