"""One structured JSON line per request; never the body, a token, or a patient or user identifier."""

from __future__ import annotations

import logging

import orjson

from cds_service.logs import json_formatter
from tests.support import hook_request

PV = "/cds-services/fbss-miss-advisor"


def _request_lines(caplog):
    return [record for record in caplog.records if record.name == "cds_service.request"]


def test_one_line_per_request_with_the_summary_fields(client, caplog):
    caplog.set_level(logging.INFO)
    client.post(PV, json=hook_request(), headers={"X-Request-ID": "abc-123"})
    [record] = _request_lines(caplog)
    line = orjson.loads(json_formatter().format(record))
    assert line["message"] == "request"
    assert line["request_id"] == "abc-123"
    assert line["service"] == "fbss-miss-advisor"
    assert line["hook"] == "patient-view"
    assert line["status"] == 200
    assert line["cards"] == 0
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO"


def test_error_requests_are_logged_too(client, caplog):
    caplog.set_level(logging.INFO)
    client.post("/cds-services/unknown", json=hook_request())
    [record] = _request_lines(caplog)
    assert record.status == 404


def test_response_carries_the_request_id(client):
    assert client.get("/healthz", headers={"X-Request-ID": "r-1"}).headers["X-Request-ID"] == "r-1"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_no_phi_token_or_body_in_any_log_line(client, caplog):
    caplog.set_level(logging.DEBUG)
    body = hook_request(
        patient_id="patient-7c1e",
        fhirServer="https://ehr.example.org/fhir",
        fhirAuthorization={"access_token": "tok-SECRET-9f2", "token_type": "Bearer", "expires_in": 300,
                           "scope": "user/Patient.read", "subject": "cds"},
        prefetch={"patient": {"resourceType": "Patient", "id": "patient-7c1e",
                              "name": [{"family": "Quixote-Uniquename"}]}},
    )
    body["context"]["userId"] = "Practitioner/doc-55aa"
    body["prefetch"]["user"] = "not-a-resource"  # logged as a key name only
    client.post(PV, json=body, headers={"Authorization": "Bearer jwt-SECRET-77"})
    client.post(PV, json={"hook": "patient-view"}, headers={"Authorization": "Bearer jwt-SECRET-77"})
    formatter = json_formatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert caplog.records
    for secret in ("patient-7c1e", "tok-SECRET-9f2", "Quixote-Uniquename", "doc-55aa", "jwt-SECRET-77",
                   body["hookInstance"]):
        assert secret not in text
