"""Helpers shared by the tests: schema checks, the no-empty-values rule, and hook request builders."""

from __future__ import annotations

import re
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.operationoutcome import OperationOutcome
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from cds_service.state import state

SCHEMAS = Path(__file__).parent / "schemas"
SERVICE_IDS = {"patient-view": "fbss-miss-advisor", "order-select": "fbss-miss-orders",
               "order-sign": "fbss-miss-orders"}
_SERVICE_CALL = re.compile(r"^/cds-services/[^/]+$")


@cache
def validator(name: str) -> Draft202012Validator:
    schema = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(instance: Any, schema: str) -> None:
    errors = sorted(validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def empty_values(value: Any, path: str = "$") -> list[str]:
    """Paths of every null, "", [] or {} in a JSON value (CDS Hooks 2.0 G2 forbids them in output)."""
    if value is None or (isinstance(value, str | list | dict) and not value):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in empty_values(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in empty_values(item, f"{path}[{index}]")]
    return []


def assert_operation_outcome(response, status: int, diagnostics_contains: str | None = None) -> dict:
    """The response has `status`, a JSON content type, and a valid FHIR OperationOutcome body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = orjson.loads(response.get_data())
    assert_valid(body, "fhir-operation-outcome")
    OperationOutcome.model_validate(body)  # also a valid FHIR R4 (R4B) resource
    if diagnostics_contains:
        assert diagnostics_contains in body["issue"][0]["diagnostics"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def empty_prefetch(patient_id: str = "p1") -> dict[str, Any]:
    """Prefetch for a patient with no clinical data: the patient, and every search key as null ("no data")."""
    keys = ("conditions", "procedures", "observations", "medicationRequests", "medicationStatements",
            "serviceRequests", "diagnosticReports", "imagingStudies")
    return {"patient": {"resourceType": "Patient", "id": patient_id}, **dict.fromkeys(keys)}


def hook_request(hook: str = "patient-view", *, patient_id: str = "p1", **extra: Any) -> dict[str, Any]:
    """A minimal valid CDS Hooks 2.0 request for `hook` (order hooks get one draft ServiceRequest)."""
    context: dict[str, Any] = {"userId": "Practitioner/1", "patientId": patient_id}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "sr1", "status": "draft",
                                    "intent": "order", "subject": {"reference": f"Patient/{patient_id}"},
                                    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt",
                                                         "code": "72148"}]}}}],
        }
    if hook == "order-select":
        context["selections"] = ["ServiceRequest/sr1"]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
                            "prefetch": empty_prefetch(patient_id)}
    if isinstance(extra.get("prefetch"), dict):
        extra = dict(extra, prefetch={**body["prefetch"], **extra["prefetch"]})
    body.update(extra)
    assert_valid(body, "cds-hooks-2.0-request")
    return body


class SchemaCheckingClient(FlaskClient):
    """A test client that checks every discovery and successful hook response against the strict schemas."""

    def open(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        response = super().open(*args, **kwargs)
        request = response.request
        if response.status_code == 200 and request.method in ("GET", "POST"):
            if request.path == "/cds-services":
                body = orjson.loads(response.get_data())
                assert_valid(body, "cds-hooks-2.0-discovery")
                assert empty_values(body) == []
            elif _SERVICE_CALL.match(request.path) and request.method == "POST":
                body = orjson.loads(response.get_data())
                assert_valid(body, "cds-hooks-2.0-response")
                assert [path for path in empty_values(body) if path != "$.cards"] == []
                assert response.mimetype == "application/json"
        return response


def call_fixture(app: Any, fixture: Any, at: Any = None) -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
    """A fixture's hook request, built as a fully prefetching client would (the service's own prefetch templates),
    sent with the clock pinned at `at` (the fixture's anchor by default): the request body, the response and its cards
    (200 asserted)."""
    from cds_service.services import declared_services  # noqa: PLC0415

    at = at or fixture.anchor
    state(app).clock = lambda: at
    hook = fixture.expected["hook"]
    service = next(s for s in declared_services() if s.hook == hook)
    body = fixture.hook_request(service.prefetch, at, hook=hook)
    response = app.test_client().post(f"/cds-services/{SERVICE_IDS[hook]}", json=body)
    assert response.status_code == 200, (fixture.name, response.get_data(as_text=True))
    return body, response, orjson.loads(response.get_data())["cards"]


def without_call_ids(card: dict[str, Any]) -> dict[str, Any]:
    """A card without what differs between any two calls: its uuid, its suggestions' uuids, and the card uuid its
    evidence-app link names in appContext (the rest of the appContext, type and evidence, stays compared)."""
    card.pop("uuid", None)
    for suggestion in card.get("suggestions", ()):
        suggestion.pop("uuid", None)
    for link in card.get("links", ()):
        if link.get("type") == "smart" and "appContext" in link:
            context = orjson.loads(link["appContext"])
            context.pop("card", None)
            link["appContext"] = context
    return card

