"""POST /cds-services/{id}: every answer of the invocation protocol, each error as an OperationOutcome."""

from __future__ import annotations

import io

import orjson
import pytest

from cds_service.services.declaration import CdsServiceDeclaration
from cds_service.state import state
from tests.support import SERVICE_IDS, assert_operation_outcome, hook_request

PV = "/cds-services/fbss-miss-advisor"


@pytest.mark.parametrize("hook", sorted(SERVICE_IDS))
def test_each_service_answers_its_hook_with_cards(client, hook):
    response = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_request(hook))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert orjson.loads(response.get_data()) == {"cards": []}


@pytest.mark.parametrize("content_type", [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    "application/fhir+json",
])
def test_any_json_media_type_is_accepted(client, content_type):
    response = client.post(PV, data=orjson.dumps(hook_request()), content_type=content_type)
    assert response.status_code == 200


def test_missing_content_type_is_tolerated(client):
    response = client.post(PV, data=orjson.dumps(hook_request()))
    assert response.status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_non_json_media_type_is_415(client, content_type):
    response = client.post(PV, data=orjson.dumps(hook_request()), content_type=content_type)
    assert_operation_outcome(response, 415, "Content-Type must be application/json")


def test_unknown_service_is_404(client):
    response = client.post("/cds-services/no-such-service", json=hook_request())
    assert_operation_outcome(response, 404, "no-such-service")


def test_unknown_path_is_404_operation_outcome(client):
    assert_operation_outcome(client.get("/nothing-here"), 404)


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_wrong_method_on_service_is_405_with_allow(client, method):
    response = getattr(client, method)(PV)
    assert_operation_outcome(response, 405)
    assert "POST" in response.headers["Allow"]


def test_wrong_method_on_discovery_is_405(client):
    assert_operation_outcome(client.post("/cds-services", json={}), 405)


@pytest.mark.parametrize("body", [b"{", b"not json", b"[1, 2", b"\xff\xfe"])
def test_malformed_json_is_400(client, body):
    assert_operation_outcome(client.post(PV, data=body, content_type="application/json"), 400, "not valid JSON")


@pytest.mark.parametrize("body", [b"", b" \r\n\t "])
def test_empty_body_is_400(client, body):
    assert_operation_outcome(client.post(PV, data=body, content_type="application/json"), 400, "empty")


def _chunked(client, body: bytes):
    """A POST whose body has no declared length (as a server passes on chunked transfer: wsgi.input_terminated)."""
    return client.post(PV, input_stream=io.BytesIO(body), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


def test_body_without_declared_length_is_read(client):
    response = _chunked(client, orjson.dumps(hook_request()))
    assert response.status_code == 200
    assert orjson.loads(response.get_data()) == {"cards": []}


def test_body_without_declared_length_over_the_limit_is_413(make_app):
    client = make_app(MAX_BODY_BYTES=2048).test_client()
    body = hook_request(prefetch={"patient": {"resourceType": "Patient", "id": "p1", "text": {"div": "x" * 4096}}})
    assert_operation_outcome(_chunked(client, orjson.dumps(body)), 413, "CDS_MAX_BODY_BYTES")


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_that_is_not_an_object_is_400(client, body):
    assert_operation_outcome(client.post(PV, data=orjson.dumps(body), content_type="application/json"), 400)


def _without(body: dict, *path: str) -> dict:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(("hook", "path", "named"), [
    ("patient-view", ("hook",), "'hook'"),
    ("patient-view", ("hookInstance",), "'hookInstance'"),
    ("patient-view", ("context",), "'context'"),
    ("patient-view", ("context", "userId"), "context.userId"),
    ("patient-view", ("context", "patientId"), "context.patientId"),
    ("order-select", ("context", "selections"), "context.selections"),
    ("order-select", ("context", "draftOrders"), "context.draftOrders"),
    ("order-sign", ("context", "draftOrders"), "context.draftOrders"),
    ("order-sign", ("context", "patientId"), "context.patientId"),
])
def test_missing_required_field_is_400_naming_it(client, hook, path, named):
    body = _without(hook_request(hook), *path)
    response = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=body)
    assert_operation_outcome(response, 400, named)


def test_hook_not_matching_the_service_is_400(client):
    response = client.post(PV, json=hook_request("order-sign"))
    assert_operation_outcome(response, 400, "answers the 'patient-view' hook")


@pytest.mark.parametrize(("field", "value"), [
    ("userId", "1"),                 # not Type/id
    ("userId", 7),
    ("patientId", ""),
    ("patientId", "has space"),
    ("patientId", ["p1"]),
])
def test_malformed_context_field_is_400(client, field, value):
    body = hook_request()
    body["context"][field] = value
    assert_operation_outcome(client.post(PV, json=body), 400, f"context.{field}")


def test_user_id_may_be_practitioner_role_or_patient(client):
    for user in ("PractitionerRole/9", "Patient/p1", "RelatedPerson/r-1"):
        body = hook_request()
        body["context"]["userId"] = user
        assert client.post(PV, json=body).status_code == 200


def test_selections_must_be_references(client):
    body = hook_request("order-select")
    body["context"]["selections"] = ["sr1"]
    response = client.post("/cds-services/fbss-miss-order-select", json=body)
    assert_operation_outcome(response, 400, "context.selections")


def test_draft_orders_must_be_a_bundle(client):
    body = hook_request("order-sign")
    body["context"]["draftOrders"] = {"resourceType": "ServiceRequest"}
    response = client.post("/cds-services/fbss-miss-order-sign", json=body)
    assert_operation_outcome(response, 400, "context.draftOrders")


AUTHORIZATION = {"access_token": "secret-token", "token_type": "Bearer", "expires_in": 300,
                 "scope": "user/Patient.read user/Condition.read", "subject": "cds-service"}


def test_fhir_authorization_without_fhir_server_is_400(client):
    body = hook_request()
    body["fhirAuthorization"] = dict(AUTHORIZATION)  # deliberately without fhirServer
    response = client.post(PV, json=body)
    assert_operation_outcome(response, 400, "'fhirServer' is required")
    assert "secret-token" not in response.get_data(as_text=True)


@pytest.mark.parametrize("missing", ["expires_in", "scope", "subject", "token_type"])
def test_fhir_authorization_missing_an_informational_field_still_lends_its_token(app, missing):
    """The public CDS Hooks Sandbox copies an OAuth token response, where expires_in is only recommended: the token is
    used all the same (a missing token_type is read as the only one CDS Hooks allows, Bearer)."""
    import re  # noqa: PLC0415

    import responses  # noqa: PLC0415

    authorization = dict(AUTHORIZATION)
    del authorization[missing]
    body = hook_request(fhirServer="https://ehr.example.org/fhir")
    body["fhirAuthorization"] = authorization
    del body["prefetch"]["conditions"]  # to be read from the FHIR server, with the token lent
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, re.compile(r"https://ehr\.example\.org/fhir/Condition.*"),
                 json={"resourceType": "Bundle", "type": "searchset", "entry": []})
        response = app.test_client().post(PV, json=body)
        assert response.status_code == 200
        assert mock.calls[0].request.headers["Authorization"] == "Bearer secret-token"


@pytest.mark.parametrize("change", [{"access_token": ""}, {"token_type": "MAC"}, "not an object"])
def test_a_fhir_authorization_without_a_usable_token_is_no_token_not_a_400(client, change):
    """A fully prefetched call is answered; one that needs a read gets 412 (nothing to read with), never 400."""
    authorization = dict(AUTHORIZATION, **change) if isinstance(change, dict) else change
    body = hook_request(fhirServer="https://ehr.example.org/fhir")
    body["fhirAuthorization"] = authorization  # set after: the helper checks bodies against the strict schema
    assert client.post(PV, json=body).status_code == 200
    del body["prefetch"]["conditions"]
    import re  # noqa: PLC0415

    import responses  # noqa: PLC0415

    with responses.RequestsMock() as mock:  # the local profile reads without a token; this server wants one
        mock.add(responses.GET, re.compile(r"https://ehr\.example\.org/fhir/Condition.*"), status=401)
        response = client.post(PV, json=body)
        assert all("Authorization" not in call.request.headers for call in mock.calls)
    assert response.status_code == 412
    assert "secret-token" not in response.get_data(as_text=True)


def test_complete_fhir_authorization_is_accepted(client):
    body = hook_request(fhirServer="https://ehr.example.org/fhir",
                        fhirAuthorization=dict(AUTHORIZATION, patient="p1"))
    assert client.post(PV, json=body).status_code == 200


def test_fhir_server_must_be_a_url(client):
    body = hook_request()
    body["fhirServer"] = "ehr.example.org"
    assert_operation_outcome(client.post(PV, json=body), 400, "fhirServer")


def test_prefetch_values_null_or_resources_are_accepted(client):
    body = hook_request(prefetch={"patient": {"resourceType": "Patient", "id": "p1"}, "conditions": None})
    assert client.post(PV, json=body).status_code == 200


def test_prefetch_value_that_is_not_a_resource_counts_as_not_satisfied(client, app):
    """P9: the 2.0 spec's own example sends `"user": "123"`; that key is dropped, not the request."""
    seen = {}

    def advise(request, runtime):
        seen.update(request.prefetch)
        return []

    registry = state(app).services
    registry.replace(_with_advise(registry.hooks("fbss-miss-advisor")["patient-view"], advise))
    body = hook_request(prefetch={"patient": {"resourceType": "Patient", "id": "p1"}})
    body["prefetch"].update({"user": "123"})
    assert client.post(PV, json=body).status_code == 200
    assert "user" not in seen and "conditions" in seen and seen["conditions"] is None


@pytest.mark.parametrize("key", ["patient", "conditions", "procedures"])
def test_required_data_absent_without_fhir_server_is_412(client, key):
    body = hook_request()
    del body["prefetch"][key]
    assert_operation_outcome(client.post(PV, json=body), 412, key)


def test_required_data_as_operation_outcome_is_412(client):
    body = hook_request()
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "timeout", "diagnostics": "search timed out"}]}
    assert_operation_outcome(client.post(PV, json=body), 412, "conditions")


def test_optional_data_absent_still_gives_advice(client):
    body = hook_request()
    del body["prefetch"]["observations"]
    assert client.post(PV, json=body).status_code == 200


def test_prefetch_that_is_not_an_object_is_400(client):
    body = hook_request()
    body["prefetch"] = ["x"]
    assert_operation_outcome(client.post(PV, json=body), 400, "'prefetch'")


def test_unknown_fields_and_extensions_are_ignored(client):
    body = hook_request(extension={"com.example.flag": {"x": 1}}, somethingNew=True)
    body["context"]["extension"] = {"org.example": 1}
    assert client.post(PV, json=body).status_code == 200


def test_non_uuid_hook_instance_is_tolerated(client):
    body = hook_request()
    body["hookInstance"] = "not-a-uuid-but-unique-12345"
    assert client.post(PV, json=body).status_code == 200


def test_body_over_the_limit_is_413(make_app):
    client = make_app(MAX_BODY_BYTES=2048).test_client()
    body = hook_request(prefetch={"patient": {"resourceType": "Patient", "id": "p1", "text": {"div": "x" * 4096}}})
    assert_operation_outcome(client.post(PV, json=body), 413, "CDS_MAX_BODY_BYTES")


def test_body_under_the_limit_is_accepted(make_app):
    client = make_app(MAX_BODY_BYTES=2048).test_client()
    assert client.post(PV, json=hook_request()).status_code == 200


def _with_advise(declaration: CdsServiceDeclaration, advise) -> CdsServiceDeclaration:
    return CdsServiceDeclaration(
        id=declaration.id, hook=declaration.hook, title=declaration.title, description=declaration.description,
        advise=advise, prefetch=declaration.prefetch, usage_requirements=declaration.usage_requirements,
    )


def test_unexpected_error_is_500_with_request_id_and_no_stack_trace(app, client, caplog):
    def broken(request, runtime):
        raise RuntimeError("boom: internal detail")

    registry = state(app).services
    registry.replace(_with_advise(registry.hooks("fbss-miss-advisor")["patient-view"], broken))
    response = client.post(PV, json=hook_request(), headers={"X-Request-ID": "req-42"})
    body = assert_operation_outcome(response, 500, "req-42")
    assert "boom" not in response.get_data(as_text=True)
    assert body["issue"][0]["code"] == "exception"
    assert any(record.exc_info for record in caplog.records if record.name == "cds_service.errors")


def test_cards_are_emitted_without_empty_values(app, client):
    """The response builder removes null and empty members (G2), whatever a service hands it."""
    card = {
        "uuid": "0b0c43b6-3b1e-4a4f-9d7c-6f8b2a0d9c11", "summary": "Example", "indicator": "info",
        "detail": "", "source": {"label": "FBSS/MISS advisor", "url": None, "topic": {
            "system": "urn:spine-cds:card-type", "code": "fbss-imaging", "display": None}},
        "suggestions": [], "links": None, "overrideReasons": [{}],
    }
    registry = state(app).services
    registry.replace(_with_advise(registry.hooks("fbss-miss-advisor")["patient-view"], lambda request, runtime: [card]))
    body = orjson.loads(client.post(PV, json=hook_request()).get_data())
    assert body == {"cards": [{
        "uuid": "0b0c43b6-3b1e-4a4f-9d7c-6f8b2a0d9c11", "summary": "Example", "indicator": "info",
        "source": {"label": "FBSS/MISS advisor", "topic": {"system": "urn:spine-cds:card-type",
                                                           "code": "fbss-imaging"}},
    }]}
