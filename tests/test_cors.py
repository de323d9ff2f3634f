"""CORS: preflight on the three CDS endpoints succeeds without authentication (conformance S3)."""

from __future__ import annotations

import pytest

PREFLIGHT = {
    "Origin": "https://sandbox.cds-hooks.org",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}
PATHS = ["/cds-services", "/cds-services/fbss-miss-advisor", "/cds-services/fbss-miss-advisor/feedback"]


@pytest.mark.parametrize("path", PATHS)
def test_preflight_allows_authorization_and_content_type(client, path):
    response = client.options(path, headers=PREFLIGHT)
    assert 200 <= response.status_code < 300
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_actual_response_carries_the_allow_origin_header(client):
    response = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")


def test_production_allows_no_origin_by_default(make_app):
    client = make_app(PROFILE="production").test_client()
    response = client.options("/cds-services", headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_configured_origins_only(make_app):
    client = make_app(PROFILE="production", CORS_ORIGINS=("https://ehr.example.org",)).test_client()
    allowed = client.options("/cds-services", headers=dict(PREFLIGHT, Origin="https://ehr.example.org"))
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    other = client.options("/cds-services", headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_health_endpoints_are_not_cross_origin(client):
    response = client.get("/healthz", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_local_service_answers_private_network_preflight(client):
    """Chrome asks before an https page (the public CDS Hooks Sandbox) may call a service on localhost."""
    response = client.options("/cds-services", headers={**PREFLIGHT, "Access-Control-Request-Private-Network": "true"})
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"


def test_production_does_not_allow_private_network_access(make_app):
    client = make_app(PROFILE="production", CORS_ORIGINS=("https://ehr.example.org",)).test_client()
    response = client.options("/cds-services", headers={**PREFLIGHT, "Origin": "https://ehr.example.org",
                                                         "Access-Control-Request-Private-Network": "true"})
    assert response.headers.get("Access-Control-Allow-Private-Network") != "true"
