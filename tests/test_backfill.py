"""Prefetch resolution and FHIR-server backfill (conformance P1-P9, A1-A6), with `responses` as the FHIR server."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
import requests
import responses

from cds_service.fhir.resolve import resolve_prefetch
from cds_service.fixtures import load_fixtures, suggested_codes
from cds_service.hooks.request import parse_hook_request
from cds_service.sandbox.search import execute, searchset
from cds_service.services import patient_view
from cds_service.state import state
from tests.issuer import LOCAL_ROOT, Issuer, bearer, trusted_issuers_file
from tests.support import assert_operation_outcome

BASE = "https://ehr.example.org/fhir"
TOKEN = "token-b7f1-SECRET"  # noqa: S105 (a fake token the tests look for)
AUTH = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"}
PV = "/cds-services/fbss-miss-advisor"
FIXTURES = load_fixtures()
RECURRENT = next(f for f in FIXTURES if f.name.endswith("recurrent-herniation"))  # fbss-imaging + revision-referral


class FhirServer:
    """A FHIR server over a fixture's resources: reads, searches, optional paging; records what it was asked."""

    def __init__(self, mock: responses.RequestsMock, resources: list[dict], base: str = BASE,
                 page_size: int | None = None) -> None:
        self.resources, self.base, self.page_size = resources, base, page_size
        mock.add_callback(responses.GET, re.compile(re.escape(base) + r"/.*"), callback=self.answer)

    def answer(self, request):
        parts = urlsplit(request.url)
        path = parts.path[len(urlsplit(self.base).path):].strip("/")
        params = [(k, v) for k, v in parse_qsl(parts.query) if k != "page"]
        query = path + ("?" + "&".join(f"{k}={v}" for k, v in params) if params else "")
        result = execute(query, self.resources)
        if result is None:
            return 404, {"Content-Type": "application/fhir+json"}, orjson.dumps(
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
        if self.page_size and result["resourceType"] == "Bundle":
            page = int(dict(parse_qsl(parts.query)).get("page", "0"))
            entries = result["entry"]
            chunk = entries[page * self.page_size:(page + 1) * self.page_size]
            result = searchset([e["resource"] for e in chunk])
            if (page + 1) * self.page_size < len(entries):
                base_query = "&".join(f"{k}={v}" for k, v in params)
                result["link"] = [{"relation": "next", "url": f"{self.base}/{path}?{base_query}&page={page + 1}"}]
        return 200, {"Content-Type": "application/fhir+json"}, orjson.dumps(result)


def request_body(fixture=RECURRENT, *, drop=(), prefetch_all=True, **extra):
    body = fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)
    if not prefetch_all:
        body["prefetch"] = {}
    for key in drop:
        body["prefetch"].pop(key, None)
    body.update({"fhirServer": BASE, "fhirAuthorization": dict(AUTH)})
    body.update(extra)
    return body


def post(app, body, fixture=RECURRENT):
    state(app).clock = lambda: fixture.anchor
    return app.test_client().post(PV, json=body)


def advice(response):
    cards = orjson.loads(response.get_data())["cards"]
    return [(c["source"]["topic"]["code"], c["summary"], sorted(suggested_codes(c))) for c in cards]


def sent(mock):
    """(path with query, Authorization header) of every request the FHIR server received."""
    return [(urlsplit(call.request.url).path.split("/fhir/", 1)[-1] + ("?" if urlsplit(call.request.url).query else "")
             + urlsplit(call.request.url).query, call.request.headers.get("Authorization")) for call in mock.calls]


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def full_advice(app):
    return advice(post(app, RECURRENT.hook_request(patient_view.SERVICE.prefetch, RECURRENT.anchor)))


def test_all_keys_prefetched_sends_no_request(app, mock, full_advice):
    FhirServer(mock, RECURRENT.resources())
    response = post(app, request_body())
    assert response.status_code == 200
    assert advice(response) == full_advice
    assert full_advice[0][0] == "fbss-imaging" and full_advice[1][0] == "revision-referral"
    assert sent(mock) == []


def test_one_key_absent_is_fetched_with_the_token(app, mock, full_advice):
    FhirServer(mock, RECURRENT.resources())
    response = post(app, request_body(drop=["conditions"]))
    assert response.status_code == 200
    assert advice(response) == full_advice
    assert sent(mock) == [(f"Condition?patient={RECURRENT.patient_id}", f"Bearer {TOKEN}")]
    assert mock.calls[0].request.headers["Accept"] == "application/fhir+json"


def test_all_keys_absent_are_fetched(app, mock, full_advice):
    FhirServer(mock, RECURRENT.resources())
    response = post(app, request_body(prefetch_all=False))
    assert response.status_code == 200
    assert advice(response) == full_advice
    paths = sorted(path.split("?")[0] for path, _ in sent(mock))
    assert paths == sorted(["Patient/" + RECURRENT.patient_id, "Condition", "Procedure", "Observation",
                            "MedicationRequest", "MedicationStatement", "ServiceRequest", "DiagnosticReport",
                            "ImagingStudy"])
    assert {auth for _, auth in sent(mock)} == {f"Bearer {TOKEN}"}


def test_null_means_no_data_and_is_not_fetched(app, mock):
    FhirServer(mock, RECURRENT.resources())
    body = request_body()
    body["prefetch"]["conditions"] = None
    response = post(app, body)
    assert response.status_code == 200 and advice(response) == []  # no symptoms, no card
    assert sent(mock) == []


def test_empty_bundle_is_used_not_fetched(app, mock):
    FhirServer(mock, RECURRENT.resources())
    body = request_body()
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    assert advice(post(app, body)) == [] and sent(mock) == []


@pytest.mark.parametrize("failure", ["top-level", "entry"])
def test_operation_outcome_means_the_client_failed_and_the_service_fetches(app, mock, full_advice, failure):
    FhirServer(mock, RECURRENT.resources())
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    body = request_body()
    body["prefetch"]["conditions"] = outcome if failure == "top-level" else {
        "resourceType": "Bundle", "type": "searchset", "entry": [{"resource": outcome, "search": {"mode": "outcome"}}]}
    response = post(app, body)
    assert advice(response) == full_advice
    assert [path.split("?")[0] for path, _ in sent(mock)] == ["Condition"]


def test_operation_outcome_without_fhir_server_is_412(app):
    body = request_body()
    del body["fhirServer"], body["fhirAuthorization"]
    body["prefetch"]["procedures"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "exception"}]}
    assert_operation_outcome(post(app, body), 412, "procedures (no fhirServer to fetch from)")


def test_a_fetched_search_is_followed_through_three_pages(app, mock, full_advice):
    server = FhirServer(mock, RECURRENT.resources(), page_size=3)
    response = post(app, request_body(drop=["conditions"]))
    assert advice(response) == full_advice
    conditions = [r for r in server.resources if r["resourceType"] == "Condition"]
    assert 6 < len(conditions) <= 9  # three pages of three
    assert [path for path, _ in sent(mock)] == [
        f"Condition?patient={RECURRENT.patient_id}", f"Condition?patient={RECURRENT.patient_id}&page=1",
        f"Condition?patient={RECURRENT.patient_id}&page=2"]
    assert {auth for _, auth in sent(mock)} == {f"Bearer {TOKEN}"}


def test_a_paged_prefetch_is_completed_from_the_server(app, mock, full_advice):
    FhirServer(mock, RECURRENT.resources(), page_size=3)
    conditions = [r for r in RECURRENT.resources() if r["resourceType"] == "Condition"]
    body = request_body()
    body["prefetch"]["conditions"] = {
        "resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in conditions[:3]],
        "link": [{"relation": "next", "url": f"{BASE}/Condition?patient={RECURRENT.patient_id}&page=1"}]}
    response = post(app, body)
    assert advice(response) == full_advice
    assert [path for path, _ in sent(mock)] == [f"Condition?patient={RECURRENT.patient_id}&page=1",
                                                f"Condition?patient={RECURRENT.patient_id}&page=2"]


def test_next_link_to_another_origin_is_not_followed(app, mock):
    FhirServer(mock, RECURRENT.resources())
    evil = mock.add(responses.GET, re.compile(r"https://attacker\.example/.*"), json={})
    body = request_body()
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": "https://attacker.example/steal?page=2"}]
    response = post(app, body)
    assert_operation_outcome(response, 412, "conditions (next page is on another server")
    assert evil.call_count == 0
    assert all("attacker" not in call.request.url for call in mock.calls)


@pytest.mark.parametrize(("status", "reason"), [(401, "refused the token (HTTP 401)"),
                                                (403, "refused the token (HTTP 403)")])
def test_token_refused_is_412_naming_why(app, mock, status, reason):
    mock.add(responses.GET, re.compile(re.escape(BASE) + r"/Condition.*"), status=status)
    response = post(app, request_body(drop=["conditions"]))
    body = assert_operation_outcome(response, 412, reason)
    assert TOKEN not in orjson.dumps(body).decode()
    assert len(mock.calls) == 1


def test_patient_not_found_is_412(app, mock):
    mock.add(responses.GET, re.compile(re.escape(BASE) + r"/Patient/.*"), status=404, json={
        "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
    response = post(app, request_body(drop=["patient"]))
    assert_operation_outcome(response, 412, "patient (the FHIR server answered HTTP 404)")


def test_503_then_200_is_retried_once(app, mock, full_advice):
    url = re.compile(re.escape(BASE) + r"/Condition.*")
    conditions = execute(f"Condition?patient={RECURRENT.patient_id}", RECURRENT.resources())
    mock.add(responses.GET, url, status=503)
    mock.add(responses.GET, url, json=conditions)
    response = post(app, request_body(drop=["conditions"]))
    assert advice(response) == full_advice
    assert len(mock.calls) == 2


def test_500_is_not_retried_and_leaves_the_data_unavailable(app, mock):
    url = re.compile(re.escape(BASE) + r"/Condition.*")
    mock.add(responses.GET, url, status=500)
    mock.add(responses.GET, url, json=execute(f"Condition?patient={RECURRENT.patient_id}", RECURRENT.resources()))
    assert_operation_outcome(post(app, request_body(drop=["conditions"])), 412, "HTTP 500")
    assert len(mock.calls) == 1


def test_connection_error_is_retried_once(app, mock, full_advice):
    url = re.compile(re.escape(BASE) + r"/Condition.*")
    mock.add(responses.GET, url, body=requests.ConnectionError("reset"))
    mock.add(responses.GET, url, json=execute(f"Condition?patient={RECURRENT.patient_id}", RECURRENT.resources()))
    assert advice(post(app, request_body(drop=["conditions"]))) == full_advice
    assert len(mock.calls) == 2


def test_malformed_json_is_412_for_required_data(app, mock):
    mock.add(responses.GET, re.compile(re.escape(BASE) + r"/Procedure.*"), body=b"{not json")
    assert_operation_outcome(post(app, request_body(drop=["procedures"])), 412, "malformed JSON")


def test_optional_data_failing_is_evaluated_without_and_named_in_the_cards(app, mock):
    mock.add(responses.GET, re.compile(re.escape(BASE) + r"/Observation.*"), status=500)
    response = post(app, request_body(drop=["observations"]))
    assert response.status_code == 200
    cards = orjson.loads(response.get_data())["cards"]
    assert cards and all("observations (HbA1c, BMI, smoking status, pain scores)" in c["detail"] for c in cards)


def test_slow_server_cannot_make_the_service_exceed_its_deadline(make_app, mock):
    app = make_app(FHIR_DEADLINE_SECONDS=0.3)

    def slow(request):
        time.sleep(1.5)
        return 200, {}, orjson.dumps({"resourceType": "Bundle", "type": "searchset"})

    mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=slow)
    started = time.monotonic()
    response = post(app, request_body(drop=["conditions", "observations"]))
    elapsed = time.monotonic() - started
    assert_operation_outcome(response, 412, "conditions (timed out)")
    assert elapsed < 0.3 + 0.5, elapsed


def test_slow_optional_data_still_gives_advice_in_time(make_app, mock):
    app = make_app(FHIR_DEADLINE_SECONDS=0.3)
    mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"),
                      callback=lambda request: (time.sleep(1.5), (200, {}, b"{}"))[1])
    started = time.monotonic()
    response = post(app, request_body(drop=["medicationRequests"]))
    assert response.status_code == 200 and time.monotonic() - started < 0.8
    assert "medication orders" in orjson.loads(response.get_data())["cards"][0]["detail"]


def test_no_fhir_server_with_missing_required_data_is_412(app):
    body = request_body(drop=["conditions"])
    del body["fhirServer"], body["fhirAuthorization"]
    assert_operation_outcome(post(app, body), 412, "conditions (no fhirServer to fetch from)")


def test_fhir_authorization_without_fhir_server_is_400(app):
    body = request_body()
    del body["fhirServer"]
    assert_operation_outcome(post(app, body), 400, "'fhirServer' is required")


def production(make_app, tmp_path):
    """A production app trusting one test issuer, and a way to call it with a fresh, valid client JWT."""
    issuer = Issuer()
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=trusted_issuers_file(tmp_path / "issuers.json",
                                                                               issuer.config()))

    def call(body):
        state(app).clock = lambda: RECURRENT.anchor
        return app.test_client().post(PV, json=body, headers=bearer(issuer.token(LOCAL_ROOT + PV)))

    return call


def test_production_refuses_plain_http(make_app, mock, tmp_path):
    call = production(make_app, tmp_path)
    body = request_body(drop=["conditions"], fhirServer="http://127.0.0.1:9999/fhir")
    assert_operation_outcome(call(body), 412, "fhirServer must be https")
    assert len(mock.calls) == 0


def test_production_will_not_call_without_a_token(make_app, mock, tmp_path):
    call = production(make_app, tmp_path)
    body = request_body(drop=["conditions"])
    del body["fhirAuthorization"]
    assert_operation_outcome(call(body), 412, "no fhirAuthorization")
    assert len(mock.calls) == 0


def test_local_profile_allows_http_to_loopback_only(app, mock, full_advice):
    FhirServer(mock, RECURRENT.resources(), base="http://127.0.0.1:9999/fhir")
    body = request_body(drop=["conditions"], fhirServer="http://127.0.0.1:9999/fhir")
    assert advice(post(app, body)) == full_advice
    remote = request_body(drop=["conditions"], fhirServer="http://ehr.example.org/fhir")
    assert_operation_outcome(post(app, remote), 412, "plain http only to loopback")


def test_local_profile_may_read_an_open_server_without_a_token(app, mock, full_advice):
    FhirServer(mock, RECURRENT.resources())
    body = request_body(drop=["conditions"])
    del body["fhirAuthorization"]
    assert advice(post(app, body)) == full_advice
    assert sent(mock) == [(f"Condition?patient={RECURRENT.patient_id}", None)]


def test_template_that_cannot_be_filled_is_not_fetched(app, mock):
    request = parse_hook_request(request_body(prefetch_all=False), "patient-view")
    resolution = resolve_prefetch(request, {"encounter": "Encounter/{{context.encounterId}}"},
                                  state(app).fhir_client, state(app).fetch_policy)
    assert resolution.unavailable == {"encounter": "its prefetch template cannot be filled from the context"}
    assert len(mock.calls) == 0


def test_token_is_never_logged(app, mock, caplog):
    caplog.set_level(logging.DEBUG)
    FhirServer(mock, RECURRENT.resources())
    post(app, request_body(prefetch_all=False))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records and TOKEN not in text and RECURRENT.patient_id not in text


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_every_fixture_gives_the_same_cards_by_prefetch_or_by_backfill(app, mock, fixture):
    FhirServer(mock, fixture.resources(), page_size=5)
    prefetched = advice(post(app, fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor), fixture))
    backfilled = advice(post(app, request_body(fixture, prefetch_all=False), fixture))
    assert backfilled == prefetched
    assert len(mock.calls) >= 9


@pytest.mark.parametrize("answer", [
    {"body": requests.ConnectionError("refused")},  # nothing listens
    {"body": requests.ConnectTimeout("filtered")},  # a firewall drops the packets
    {"status": 500},                                # something answers
    {"status": 401},
    {"body": b"<html>not FHIR</html>"},
], ids=["refused", "timeout", "http-500", "http-401", "not-json"])
def test_production_412_says_the_same_whatever_is_listening(make_app, mock, tmp_path, caplog, answer):
    """What a read from fhirServer met would tell a caller whether something listens at that address and port (a
    port scanner run through the service): production tells the client one sentence for all, and logs the cause."""
    call = production(make_app, tmp_path)
    mock.add(responses.GET, re.compile(re.escape(BASE) + r"/Condition.*"), **answer)
    with caplog.at_level(logging.WARNING, logger="cds_service.errors"):
        response = call(request_body(drop=["conditions"]))
    body = assert_operation_outcome(response, 412, "conditions (fhirServer could not be read; the service's log "
                                                   "has the cause under this call's X-Request-ID)")
    for detail in ("connect", "timed out", "HTTP", "JSON", "FHIR resource", "refused"):
        assert detail not in body["issue"][0]["diagnostics"]
    [record] = [r for r in caplog.records if r.getMessage() == "required patient data unavailable"]
    assert record.request_id == response.headers["X-Request-ID"]
    assert set(record.causes) == {"conditions"} and record.causes["conditions"] != "fhirServer could not be read"
    assert TOKEN not in str(record.__dict__)


@pytest.mark.parametrize(("answer", "label"), [
    ({"status": 500}, "http-error"), ({"status": 401}, "token-refused"), ({"body": b"{not json"}, "malformed"),
    ({"body": requests.ConnectionError("refused")}, "connection"),
])
def test_backfill_failures_are_counted_by_their_own_category(app, mock, answer, label):
    """The metric label is the failure's category, never read out of its sentence."""
    mock.add(responses.GET, re.compile(re.escape(BASE) + r"/Condition.*"), **answer)
    assert post(app, request_body(drop=["conditions"])).status_code == 412
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert f'cds_backfill_failures_total{{reason="{label}"}}' in metrics
