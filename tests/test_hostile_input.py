"""Hostile and odd input through HTTP: each case here answered 500 (or 200 with no cards where data was missing)
before; now a clear 4xx OperationOutcome naming the field, or the odd value treated as absent data."""

from __future__ import annotations

import copy
import gzip
import uuid

import pytest

from cds_service.fhir.dates import parse_datetime, quantity_days
from cds_service.fixtures import find_fixture
from cds_service.services import patient_view
from cds_service.state import state
from tests.faults import SlowHttpServer
from tests.support import assert_operation_outcome, hook_request

PV = "/cds-services/fbss-miss-advisor"
SIGN = "/cds-services/fbss-miss-orders"
FIXTURE = find_fixture("recurrent-herniation")


def body() -> dict:
    return copy.deepcopy(FIXTURE.hook_request(patient_view.SERVICE.prefetch, FIXTURE.anchor))


def post(app, payload, url=PV):
    state(app).clock = lambda: FIXTURE.anchor
    return app.test_client().post(url, json=payload)


def cards(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return sorted(card["source"]["topic"]["code"] for card in response.get_json()["cards"])


def with_resource(payload: dict, key: str, resource: dict) -> dict:
    bundle = payload["prefetch"][key] or {"resourceType": "Bundle", "type": "searchset", "entry": []}
    bundle.setdefault("entry", []).append({"resource": resource})
    payload["prefetch"][key] = bundle
    return payload


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31",
                                   "1066-10-14", "2500-01-01"])
def test_dates_out_of_range_are_unknown(value):
    assert parse_datetime(value) is None


def test_ages_and_durations_out_of_range_are_unknown():
    assert quantity_days({"value": 1e300, "code": "a"}) is None
    assert quantity_days({"value": 250, "code": "a"}) is None
    assert quantity_days({"value": 80, "code": "a"}) == 80 * 365.25


def _condition(patient_id: str, **onset) -> dict:
    return {"resourceType": "Condition", "id": "odd", "subject": {"reference": f"Patient/{patient_id}"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.16"}]}, **onset}


def _opioid(patient_id: str, authored: str, **dispense) -> dict:
    return {"resourceType": "MedicationRequest", "id": "odd", "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{patient_id}"}, "authoredOn": authored,
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "1049621"}]}, **dispense}


ODD = {  # (prefetch key, the resource with an odd value, the same resource without it)
    "date-offset-overflow": ("conditions", lambda pid: _condition(pid, onsetDateTime="0001-01-01T00:00:00+14:00"),
                             _condition),
    "huge-onset-age": ("conditions", lambda pid: _condition(pid, onsetAge={"value": 1e300, "code": "a"}),
                       _condition),
    "year-9999": ("medicationRequests", lambda pid: _opioid(pid, "9999-12-31", dispenseRequest={
        "expectedSupplyDuration": {"value": 30, "code": "d"}}), None),
    "huge-supply-duration": ("medicationRequests", lambda pid: _opioid(pid, "2024-01-01", dispenseRequest={
        "expectedSupplyDuration": {"value": 1e18, "code": "a"}}), lambda pid: _opioid(pid, "2024-01-01")),
}


@pytest.mark.parametrize("case", sorted(ODD))
def test_out_of_range_dates_and_durations_are_absent_data_not_a_500(app, case):
    """The odd value counts as absent: the cards are those of the same record without it (and a resource whose only
    date is out of range is no evidence at all)."""
    key, odd, without = ODD[case]
    pid = body()["context"]["patientId"]
    odd_cards = cards(post(app, with_resource(body(), key, odd(pid))))
    assert odd_cards == cards(post(app, with_resource(body(), key, without(pid)) if without else body()))


def _order_sign(entry) -> dict:
    request = hook_request("order-sign")
    request["context"]["draftOrders"]["entry"] = entry
    return request


@pytest.mark.parametrize("entry", [1, True, "orders"])
def test_draft_orders_entry_of_the_wrong_type_is_400(app, entry):
    assert_operation_outcome(post(app, _order_sign(entry), SIGN), 400, "context.draftOrders.entry")


def test_a_hook_instance_longer_than_the_ledger_keeps_is_400_and_a_255_one_is_recorded_whole(app):
    from sqlalchemy import select  # noqa: PLC0415

    from cds_service.storage.models import IssuedCard  # noqa: PLC0415

    request = body()
    request["hookInstance"] = "h" * 256
    assert_operation_outcome(post(app, request, PV), 400, "'hookInstance' is longer than 255 characters")
    request["hookInstance"] = "h" * 255
    assert post(app, request, PV).status_code == 200
    ledger = state(app).ledger
    ledger.flush()
    with state(app).database.connect() as connection:
        stored = set(connection.scalars(select(IssuedCard.hook_instance)))
    assert stored == {"h" * 255}


def test_a_draft_order_nested_300_levels_deep_is_400(app):
    deep: dict = {"value": 1}
    for _ in range(300):
        deep = {"extension": [deep]}
    request = hook_request("order-sign")
    request["context"]["draftOrders"]["entry"][0]["resource"]["note"] = [deep]
    response = app.test_client().post(SIGN, data=_dumps_deep(request), content_type="application/json")
    assert_operation_outcome(response, 400, "nested too deeply")


def _dumps_deep(value) -> bytes:
    """JSON of a value nested past orjson's own limit (the standard library writes it)."""
    import json  # noqa: PLC0415
    import sys  # noqa: PLC0415

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))
    try:
        return json.dumps(value).encode()
    finally:
        sys.setrecursionlimit(limit)


def _feedback(**reason) -> dict:
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-12-04T09:00:00Z"}
    return {"feedback": [{**item, "overrideReason": {"reason": {"code": "too-early", **reason}}}]}


@pytest.mark.parametrize(("reason", "field"), [
    ({"system": {"url": "x"}}, "reason.system must be a string"),
    ({"display": ["a", "b"]}, "reason.display must be a string"),
    ({"code": "c" * 200}, "reason.code is longer than 128 characters"),
    ({"code": "a\x00b"}, "reason.code must not contain NUL"),
    ({"system": "s" * 300}, "reason.system is longer than 255 characters"),
])
def test_feedback_fields_of_the_wrong_type_or_size_are_400_naming_the_field(app, reason, field):
    assert_operation_outcome(app.test_client().post(PV + "/feedback", json=_feedback(**reason)), 400, field)


@pytest.mark.parametrize(("change", "field"), [
    ({"outcome": "overridden", "acceptedSuggestions": [None]}, "acceptedSuggestions"),  # found by schemathesis: 500
    ({"outcome": "overridden", "acceptedSuggestions": "s1"}, "acceptedSuggestions"),
    ({"outcome": "accepted", "acceptedSuggestions": [{"id": "s" * 37}]}, "acceptedSuggestions"),
    ({"outcome": "accepted", "acceptedSuggestions": [{"id": 7}]}, "acceptedSuggestions"),
    ({"card": "c" * 37}, "card is required"),
    ({"card": "a\x00b"}, "card is required"),
])
def test_feedback_ids_of_the_wrong_shape_or_size_are_400(app, change, field):
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-12-04T09:00:00Z", **change}
    response = app.test_client().post(PV + "/feedback", json={"feedback": [item]})
    assert_operation_outcome(response, 400, f"feedback[0].{field}")


def test_feedback_accepted_with_well_formed_ids_is_stored(app):
    item = {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-12-04T09:00:00Z",
            "acceptedSuggestions": [{"id": str(uuid.uuid4())}]}
    response = app.test_client().post(PV + "/feedback", json={"feedback": [item]})
    assert response.status_code == 200 and response.get_json() == {"received": 1, "stored": 1}


def test_feedback_success_is_a_json_body(app):
    response = app.test_client().post(PV + "/feedback", json=_feedback(display="Too early"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == {"received": 1, "stored": 1}


@pytest.mark.parametrize("value", [
    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]},
    {"resourceType": "Patient", "id": "x"},  # a resource of the wrong type under a search key
])
def test_an_unusable_required_key_with_no_fhir_server_is_412_not_an_empty_record(app, value):
    payload = body()
    payload["prefetch"]["conditions"] = value
    assert_operation_outcome(post(app, payload), 412, "conditions")


def test_an_unusable_required_key_with_an_unreachable_fhir_server_is_412(app):
    payload = body()
    payload["prefetch"]["conditions"] = {"resourceType": "OperationOutcome",
                                         "issue": [{"severity": "error", "code": "exception"}]}
    payload["fhirServer"] = "http://127.0.0.1:9"  # nothing listens there
    assert_operation_outcome(post(app, payload), 412, "conditions")


@pytest.mark.parametrize("server", [
    pytest.param(lambda: SlowHttpServer(b"not gzip at all", gzip_bomb_bytes=0), id="wrong-content"),
    pytest.param(lambda: _BadGzip(), id="bad-gzip"),  # noqa: PLW0108 (defined below)
])
def test_a_fhir_server_sending_garbage_makes_the_data_unavailable_not_a_500(app, server):
    with server() as fhir:
        payload = body()
        del payload["prefetch"]["conditions"]
        payload["fhirServer"] = fhir.url
        assert_operation_outcome(post(app, payload), 412, "conditions")


class _BadGzip(SlowHttpServer):
    """Says gzip, sends a truncated gzip stream."""

    def __init__(self) -> None:
        super().__init__(b"")

    def _answer(self, client) -> None:
        data = client.recv(65536)
        if data:
            payload = gzip.compress(b'{"resourceType": "Bundle", "entry": []}' * 100)[:-30]
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Encoding: gzip\r\n"
                    b"Content-Length: " + str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n")
            client.sendall(head + payload)
        client.close()


def test_a_fhir_server_resetting_the_connection_makes_the_data_unavailable(app):
    from tests.faults import _reset  # noqa: PLC0415

    class Resetting(SlowHttpServer):
        def _answer(self, client) -> None:
            client.recv(65536)
            _reset(client)

    with Resetting(b"") as fhir:
        payload = body()
        del payload["prefetch"]["conditions"]
        payload["fhirServer"] = fhir.url
        assert_operation_outcome(post(app, payload), 412, "conditions")


@pytest.mark.parametrize("path", ["/analytics", "/sandbox"])
def test_pages_run_only_their_own_inline_code_never_in_a_frame_never_cached(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<style nonce="{nonce}">' in response.get_data(as_text=True)
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert app.test_client().get(path).headers["Content-Security-Policy"] != policy  # a nonce per response


def test_sql_parameters_never_appear_in_a_database_error(app):
    from sqlalchemy import insert  # noqa: PLC0415
    from sqlalchemy.exc import IntegrityError  # noqa: PLC0415

    from cds_service.storage.models import SeenToken  # noqa: PLC0415

    engine = state(app).database
    row = {"iss": "https://secret-issuer.example.org", "jti": "secret-jti-value", "expires_at": None}
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        connection.execute(insert(SeenToken), row)
    assert "secret-jti-value" not in str(raised.value) and "secret-issuer" not in str(raised.value)


def test_caches_keyed_by_request_content_do_not_keep_oversized_keys():
    """Memory bounded by the caches' sizes, not by what requests carry: long values are answered, never kept."""
    from cds_service.clinical.medications import drug_class_cache, opioid_match  # noqa: PLC0415
    from cds_service.fhir import dates  # noqa: PLC0415
    from cds_service.hooks.draft_orders import _validate_cached, _validation_problem  # noqa: PLC0415
    from cds_service.terminology.valuesets import string_members_for, terminology  # noqa: PLC0415

    _string_members, _classify_drug_cached = terminology().string_members, drug_class_cache()

    before = (dates._parse.cache_info().currsize, _string_members.cache_info().currsize,
              _classify_drug_cached.cache_info().currsize, _validate_cached.cache_info().currsize)
    assert parse_datetime("2019-05-01" + "x" * 1_000_000) is None
    assert string_members_for("http://snomed.info/sct", "1" * 1_000_000) == ()
    assert opioid_match({"text": "oxycodone " + "x" * 1_000_000}) is not None  # still classified, by its text
    assert _validation_problem("ServiceRequest", b'{"resourceType": "ServiceRequest", "note": [{"text": "'
                               + b"x" * 100_000 + b'"}]}') is not None
    after = (dates._parse.cache_info().currsize, _string_members.cache_info().currsize,
             _classify_drug_cached.cache_info().currsize, _validate_cached.cache_info().currsize)
    assert after == before
    assert (dates._parse.cache_info().maxsize, _string_members.cache_info().maxsize,
            _classify_drug_cached.cache_info().maxsize, _validate_cached.cache_info().maxsize) == (
        20_000, 20_000, 4096, 256)


def test_more_draft_orders_than_configured_is_413_before_any_is_validated(make_app):
    app = make_app(MAX_DRAFT_ORDERS=5)
    request = hook_request("order-sign")
    order = request["context"]["draftOrders"]["entry"][0]
    request["context"]["draftOrders"]["entry"] = [copy.deepcopy(order) for _ in range(6)]
    assert_operation_outcome(post(app, request, SIGN), 413, "at most 5 in one call (CDS_MAX_DRAFT_ORDERS)")
    request["context"]["draftOrders"]["entry"] = request["context"]["draftOrders"]["entry"][:5]
    assert post(app, request, SIGN).status_code == 200


def test_production_answers_412_for_a_fhir_server_on_a_private_address(make_app, tmp_path):
    import time  # noqa: PLC0415

    from tests.issuer import Issuer, bearer, trusted_issuers_file  # noqa: PLC0415

    issuer = Issuer("https://ehr.example.org", "ES384")
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=trusted_issuers_file(tmp_path / "i.json", issuer.config()))
    state(app).clock = lambda: FIXTURE.anchor
    payload = body()
    del payload["prefetch"]["conditions"]
    payload["fhirServer"] = "https://10.0.0.1/fhir"  # unroutable here: a connect attempt would wait for its timeout
    payload["fhirAuthorization"] = {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                    "scope": "user/*.read", "subject": "cds"}
    started = time.monotonic()
    response = app.test_client().post(PV, json=payload, headers=bearer(issuer.token("http://localhost" + PV)))
    assert_operation_outcome(response, 412, "CDS_FHIR_ALLOWED_NETWORKS")
    assert time.monotonic() - started < 0.5  # refused before connecting
