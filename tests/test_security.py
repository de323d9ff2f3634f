"""Client JWT authentication (conformance S3-S12) and hardening: every failure a bare 401, nothing evaluated."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service import create_app
from cds_service.config import ConfigError
from cds_service.services.declaration import CdsServiceDeclaration
from cds_service.state import state
from tests.issuer import LOCAL_ROOT, Issuer, bearer, trusted_issuers_file
from tests.support import assert_operation_outcome, hook_request

PV = "/cds-services/fbss-miss-advisor"
FEEDBACK = PV + "/feedback"
DISCOVERY = "/cds-services"
ISSUER = Issuer("https://ehr.example.org", "ES384")
RSA_ISSUER = Issuer("https://rsa-ehr.example.org", "RS384")
TENANT_ISSUER = Issuer("https://tenant-ehr.example.org", "ES384")
REMOTE_ISSUER = Issuer("https://remote-ehr.example.org", "ES384")
JWKS_URL = "https://remote-ehr.example.org/.well-known/jwks.json"


@pytest.fixture
def production(make_app, tmp_path):
    path = trusted_issuers_file(
        tmp_path / "issuers.json", ISSUER.config(), RSA_ISSUER.config(),
        TENANT_ISSUER.config(tenant=["hospital-a"]),
        {"iss": REMOTE_ISSUER.iss, "jwks_uri": JWKS_URL, "jku": [JWKS_URL]},
    )
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=path, JWKS_MIN_REFRESH_SECONDS=300,
                   DATABASE_URL=f"sqlite:///{tmp_path / 'shared.sqlite3'}")
    app.calls = []

    def spy(request, runtime):
        app.calls.append(request.hook_instance)
        return []

    registry = state(app).services
    old = registry.hooks("fbss-miss-advisor")["patient-view"]
    registry.replace(CdsServiceDeclaration(id=old.id, hook=old.hook, title=old.title, description=old.description,
                                           advise=spy, prefetch=old.prefetch))
    return app


def post(app, token=None, url=PV, body=None, headers=None):
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.update(bearer(token))
    return app.test_client().post(url, json=body or hook_request(), headers=all_headers)


def assert_refused(app, response):
    body = assert_operation_outcome(response, 401)
    assert body == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "login", "diagnostics": "Authentication failed."}]}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert app.calls == []  # nothing evaluated


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(claims: dict, alg: str = "none") -> str:
    return f"{b64({'alg': alg, 'typ': 'JWT', 'kid': ISSUER.kid})}.{b64(claims)}."


def claims(**overrides):
    now = int(time.time())
    base = {"iss": ISSUER.iss, "aud": LOCAL_ROOT + PV, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    base.update(overrides)
    return base


def _hmac_with_public_key() -> str:
    """The classic key-confusion attack: HMAC 'signed' with the issuer's public key as the secret (built by hand,
    since PyJWT itself refuses to use a PEM key as an HMAC secret)."""
    secret = ISSUER.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': ISSUER.kid})}.{b64(claims())}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


NEGATIVE = {
    "no header": lambda: None,
    # Longer than the replay store's column: refused by the verifier, where PostgreSQL answered it with a 500.
    "jti over 255 characters": lambda: ISSUER.token(LOCAL_ROOT + PV, jti="j" * 256),
    "not bearer": lambda: "Basic dXNlcjpwdw==",
    "malformed token": lambda: "not.a.jwt",
    "garbage": lambda: "abc",
    "alg none": lambda: unsigned(claims()),
    "alg none uppercase": lambda: unsigned(claims(), alg="NONE"),
    "HS256 signed with the public key": _hmac_with_public_key,
    "ES256 not allowed": lambda: jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                                            headers={"kid": ISSUER.kid}),
    "wrong aud": lambda: ISSUER.token(LOCAL_ROOT + "/cds-services/fbss-miss-orders"),
    "feedback aud on the service": lambda: ISSUER.token(LOCAL_ROOT + FEEDBACK),
    "aud of another host": lambda: ISSUER.token("https://other.example/cds-services/fbss-miss-advisor"),
    "expired": lambda: ISSUER.token(LOCAL_ROOT + PV, iat=int(time.time()) - 900, exp=int(time.time()) - 300),
    "iat in the future": lambda: ISSUER.token(LOCAL_ROOT + PV, iat=int(time.time()) + 600,
                                              exp=int(time.time()) + 900),
    "lifetime over an hour": lambda: ISSUER.token(LOCAL_ROOT + PV, exp=int(time.time()) + 3700),
    "missing exp": lambda: ISSUER.token(LOCAL_ROOT + PV, exp=None),
    "missing iat": lambda: ISSUER.token(LOCAL_ROOT + PV, iat=None),
    "missing jti": lambda: ISSUER.token(LOCAL_ROOT + PV, jti=None),
    "unknown iss": lambda: Issuer("https://unknown.example").token(LOCAL_ROOT + PV),
    "sandbox issuer in production": lambda: Issuer("https://sandbox.cds-hooks.org").token(LOCAL_ROOT + PV),
    "unknown kid": lambda: ISSUER.token(LOCAL_ROOT + PV, header={"kid": "no-such-kid"}),
    "signed by another key": lambda: ISSUER.token(LOCAL_ROOT + PV, key=Issuer().private_key),
    "tampered payload": lambda: _tamper(ISSUER.token(LOCAL_ROOT + PV)),
    "wrong typ": lambda: ISSUER.token(LOCAL_ROOT + PV, header={"typ": "at+jwt"}),
}


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["aud"] = LOCAL_ROOT + PV
    data["iss"] = ISSUER.iss
    data["exp"] += 1
    return f"{header}.{b64(data)}.{signature}"


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_refused(production, case):
    assert_refused(production, post(production, NEGATIVE[case]()))


def test_at_least_twenty_negative_cases():
    assert len(NEGATIVE) >= 20


def test_jku_not_allow_listed_is_refused_and_never_fetched(production):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        evil = mock.add(responses.GET, "https://attacker.example/jwks.json", json=ISSUER.jwks)
        token = ISSUER.token(LOCAL_ROOT + PV, header={"jku": "https://attacker.example/jwks.json"})
        assert_refused(production, post(production, token))
        assert evil.call_count == 0 and len(mock.calls) == 0


def test_replayed_jti_is_refused(production):
    token = ISSUER.token(LOCAL_ROOT + PV)
    assert post(production, token).status_code == 200
    assert len(production.calls) == 1
    production.calls.clear()
    assert_refused(production, post(production, token))


def test_replay_is_refused_across_two_instances_sharing_a_database(make_app, tmp_path):
    shared = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    path = trusted_issuers_file(tmp_path / "issuers.json", ISSUER.config())
    first = make_app(PROFILE="production", TRUSTED_ISSUERS=path, DATABASE_URL=shared)
    second = make_app(PROFILE="production", TRUSTED_ISSUERS=path, DATABASE_URL=shared)
    token = ISSUER.token(LOCAL_ROOT + DISCOVERY)
    assert first.test_client().get(DISCOVERY, headers=bearer(token)).status_code == 200
    assert second.test_client().get(DISCOVERY, headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("issuer", [ISSUER, RSA_ISSUER], ids=["ES384", "RS384"])
def test_valid_tokens_are_accepted(production, issuer):
    response = post(production, issuer.token(LOCAL_ROOT + PV))
    assert response.status_code == 200 and len(production.calls) == 1


def test_aud_may_be_an_array_and_extra_claims_are_tolerated(production):
    token = ISSUER.token(["https://other.example", LOCAL_ROOT + PV], sub="client-id", client_id="x")
    assert post(production, token).status_code == 200


def test_every_cds_endpoint_checks_its_own_url(production):
    client = production.test_client()
    assert client.get(DISCOVERY).status_code == 401
    assert client.get(DISCOVERY, headers=bearer(ISSUER.token(LOCAL_ROOT + DISCOVERY))).status_code == 200
    feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                              "outcomeTimestamp": "2025-06-01T12:00:00Z"}]}
    assert client.post(FEEDBACK, json=feedback).status_code == 401
    assert client.post(FEEDBACK, json=feedback, headers=bearer(ISSUER.token(LOCAL_ROOT + PV))).status_code == 401
    assert client.post(FEEDBACK, json=feedback, headers=bearer(ISSUER.token(LOCAL_ROOT + FEEDBACK))).status_code == 200


def test_public_base_url_is_the_audience_behind_a_proxy(make_app, tmp_path):
    path = trusted_issuers_file(tmp_path / "issuers.json", ISSUER.config())
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=path, PUBLIC_BASE_URL="https://cds.example.org/advisor")
    client = app.test_client()
    assert client.get(DISCOVERY, headers=bearer(ISSUER.token(LOCAL_ROOT + DISCOVERY))).status_code == 401
    good = ISSUER.token("https://cds.example.org/advisor/cds-services")
    assert client.get(DISCOVERY, headers=bearer(good)).status_code == 200


def test_a_spoofed_host_header_never_decides_the_audience(make_app, tmp_path):
    """A token minted for another service (its URL as aud) is refused even when the request claims that host."""
    path = trusted_issuers_file(tmp_path / "issuers.json", ISSUER.config())
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=path, PUBLIC_BASE_URL="https://cds.example.org")
    client = app.test_client()
    other = ISSUER.token("https://other-service.example.org" + DISCOVERY)
    response = client.get(DISCOVERY, headers={**bearer(other), "Host": "other-service.example.org"},
                          base_url="https://other-service.example.org")
    assert response.status_code == 401
    mine = ISSUER.token("https://cds.example.org" + DISCOVERY)
    assert client.get(DISCOVERY, headers={**bearer(mine), "Host": "other-service.example.org"},
                      base_url="https://other-service.example.org").status_code == 200


@pytest.mark.parametrize(("tenant", "named"), [("hospital-b", "tenant 'hospital-b'"),
                                               (None, "a token without a tenant claim")])
def test_a_valid_token_of_a_tenant_not_enabled_is_403_saying_so(production, tenant, named):
    """Authenticated but not enabled: 403 naming what is wrong, not a bare 401 (an integrator onboarding a tenant can
    tell the two apart); the enabled tenants are not listed; nothing is evaluated; the jti is not spent."""
    extra = {"tenant": tenant} if tenant else {}
    token = TENANT_ISSUER.token(LOCAL_ROOT + PV, **extra)
    response = post(production, token)
    body = assert_operation_outcome(response, 403, named)
    assert body["issue"][0]["code"] == "forbidden"
    assert "hospital-a" not in response.get_data(as_text=True)
    assert "WWW-Authenticate" not in response.headers
    assert production.calls == []


def test_tenant_on_the_list_is_accepted(production):
    assert post(production, TENANT_ISSUER.token(LOCAL_ROOT + PV, tenant="hospital-a")).status_code == 200


def test_preflight_health_and_openapi_need_no_token(production):
    client = production.test_client()
    preflight = client.options(PV, headers={"Origin": "https://ehr.example.org",
                                            "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert client.get(path).status_code == 200


def test_remote_jwks_is_fetched_once_and_cached(production):
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, JWKS_URL, json=REMOTE_ISSUER.jwks)
        for _ in range(3):
            assert post(production, REMOTE_ISSUER.token(LOCAL_ROOT + PV)).status_code == 200
        assert len(mock.calls) == 1


@pytest.mark.parametrize("where", ["static", "remote"])
def test_a_malformed_key_in_a_jwks_is_left_out_and_the_others_still_verify(make_app, tmp_path, caplog, where):
    good = Issuer("https://mixed-ehr.example.org", "ES384")
    bad_key = {"kid": "malformed", "kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA", "alg": "ES384"}
    jwks = {"keys": [bad_key, good.public_jwk]}
    entry = good.config(jwks=jwks) if where == "static" else {"iss": good.iss, "jwks_uri": JWKS_URL}
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=trusted_issuers_file(tmp_path / "issuers.json", entry))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, JWKS_URL, json=jwks)
        for _ in range(2):
            assert post(app, good.token(LOCAL_ROOT + PV)).status_code == 200
            refused = post(app, good.token(LOCAL_ROOT + PV, header={"kid": "malformed"}))
            assert_operation_outcome(refused, 401)
    assert [r.kid for r in caplog.records if r.getMessage() == "unusable JWK"] == ["malformed"]  # loaded once


def test_key_rotation_triggers_one_refetch_and_unknown_kids_no_more(production):
    rotating = Issuer(REMOTE_ISSUER.iss, "ES384")
    now = [1000.0]
    state(production).verifier.keys.clock = lambda: now[0]
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, JWKS_URL, json=rotating.jwks)
        assert post(production, rotating.token(LOCAL_ROOT + PV)).status_code == 200
        old_keys = rotating.jwks["keys"]
        rotating.rotate()
        mock.replace(responses.GET, JWKS_URL, json={"keys": [*old_keys, *rotating.jwks["keys"]]})
        now[0] += 301  # past the refresh interval: the new kid triggers one refetch
        assert post(production, rotating.token(LOCAL_ROOT + PV)).status_code == 200
        assert len(mock.calls) == 2
        unknown = rotating.token(LOCAL_ROOT + PV, header={"kid": "never-published"})
        for _ in range(3):
            assert post(production, unknown).status_code == 401
        assert len(mock.calls) == 2  # fetched moments ago: unknown kids trigger no fetch within the interval
        now[0] += 301
        for _ in range(3):
            assert post(production, unknown).status_code == 401
        assert len(mock.calls) == 3  # interval passed: one refetch, then none again


def test_local_profile_accepts_requests_without_a_token_with_a_warning(app, caplog):
    caplog.set_level(logging.WARNING)
    assert app.test_client().post(PV, json=hook_request()).status_code == 200
    assert any("without a client JWT" in r.getMessage() for r in caplog.records)


def test_local_profile_still_verifies_tokens_that_are_present(app):
    response = app.test_client().post(PV, json=hook_request(), headers=bearer(unsigned(claims())))
    assert_operation_outcome(response, 401)


def test_local_profile_trusts_a_sandbox_style_token(app):
    """The public sandbox's issuer and key id; the token is signed here with a key of the same kind, because the
    sandbox's private key is not part of the project — so the bundled public key must be swapped for the test."""
    sandbox = Issuer("https://sandbox.cds-hooks.org", "ES384")
    verifier = state(app).verifier
    original = verifier.issuers["https://sandbox.cds-hooks.org"]
    assert original.jwks["keys"][0]["kid"] == "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
    verifier.issuers["https://sandbox.cds-hooks.org"] = original.__class__(
        original.iss, sandbox.jwks, None, original.jku)
    token = sandbox.token(LOCAL_ROOT + PV, sub="48163c5e-88b5-4cb3-92d3-23b800caa927",
                          header={"jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"})
    assert app.test_client().post(PV, json=hook_request(), headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("content", ['{"issuers": [{"iss": "x"}]}', '{"issuers": [{"iss": "x", "jwks_uri": '
                                     '"http://plain.example/jwks"}]}', "[]", "not json"])
def test_bad_trusted_issuers_file_stops_start_up(tmp_path, content):
    path = tmp_path / "issuers.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="CDS_TRUSTED_ISSUERS"):
        create_app({"INSTANCE_PATH": str(tmp_path), "PROFILE": "production", "TRUSTED_ISSUERS": str(path),
                    "PUBLIC_BASE_URL": "https://cds.example.org"})


def test_security_headers(production, app):
    response = post(production, ISSUER.token(LOCAL_ROOT + PV))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert app.test_client().get("/healthz").headers["X-Content-Type-Options"] == "nosniff"


def test_deeply_nested_json_is_400_not_500(app):
    body = b'{"hook": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert_operation_outcome(app.test_client().post(PV, data=body, content_type="application/json"), 400)


def test_no_token_or_phi_in_logs_after_a_full_hook_call(production, caplog):
    caplog.set_level(logging.DEBUG)
    token = ISSUER.token(LOCAL_ROOT + PV)
    post(production, token, body=hook_request(patient_id="phi-patient-4711"))
    post(production, token, body=hook_request(patient_id="phi-patient-4711"))  # a replay, logged as refused
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "client authentication failed" in text
    assert token not in text and token.split(".")[2] not in text and "phi-patient-4711" not in text


def test_analytics_needs_a_token_for_its_own_url_in_production(production):
    client = production.test_client()
    assert client.get("/analytics/feedback").status_code == 401
    assert client.get("/analytics").status_code == 401
    token = ISSUER.token(LOCAL_ROOT + "/analytics/feedback")
    assert client.get("/analytics/feedback", headers=bearer(token)).status_code == 200
    assert client.get("/metrics").status_code == 200  # metrics: no patient data, scraped without a token


@pytest.mark.parametrize(("case", "label"), [
    ("expired", "expired"), ("wrong aud", "audience"), ("jti over 255 characters", "claims"),
    ("unknown iss", "issuer"), ("unknown kid", "key"), ("alg none", "algorithm"), ("garbage", "malformed"),
    ("no header", "missing"), ("lifetime over an hour", "lifetime"),
])
def test_each_refusal_is_counted_under_its_own_category(production, case, label):
    """cds_auth_failures_total's label is the category the refusal carries, never read out of its sentence."""
    def count():
        text = production.test_client().get("/metrics").get_data(as_text=True)
        match = re.search(rf'^cds_auth_failures_total{{reason="{label}"}} (\S+)$', text, flags=re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    before = count()
    assert_refused(production, post(production, NEGATIVE[case]()))
    assert count() == before + 1


def test_a_tenant_not_enabled_is_counted_as_tenant(production):
    post(production, TENANT_ISSUER.token(LOCAL_ROOT + PV, tenant="hospital-b"))
    assert 'cds_auth_failures_total{reason="tenant"}' in production.test_client().get("/metrics").get_data(as_text=True)


def test_check_token_says_which_check_a_token_fails_without_spending_it(tmp_path, monkeypatch):
    """`cds-service check-token`: for an integrator debugging a client JWT. Never prints a key; never spends a jti."""
    from click.testing import CliRunner  # noqa: PLC0415

    from cds_service.cli import main  # noqa: PLC0415

    path = trusted_issuers_file(tmp_path / "issuers.json", ISSUER.config(), TENANT_ISSUER.config(tenant=["hospital-a"]))
    monkeypatch.setenv("CDS_TRUSTED_ISSUERS", path)
    monkeypatch.setenv("CDS_INSTANCE_PATH", str(tmp_path / "instance"))
    url = "https://cds.example.org" + PV
    token = ISSUER.token(url)
    for _ in range(2):  # the jti is not spent: the same token passes twice
        result = CliRunner().invoke(main, ["check-token", token, "--url", url])
        assert result.exit_code == 0 and result.output.startswith(f"accepted: issuer {ISSUER.iss}"), result.output
    wrong = CliRunner().invoke(main, ["check-token", token, "--url", "https://cds.example.org/elsewhere"])
    assert wrong.exit_code == 1 and "refused (401): aud is not this endpoint [audience]" in wrong.output
    tenant = CliRunner().invoke(main, ["check-token", TENANT_ISSUER.token(url, tenant="hospital-b"), "--url", url])
    assert tenant.exit_code == 1 and "refused (403)" in tenant.output and "'hospital-b'" in tenant.output
    assert "BEGIN" not in wrong.output + tenant.output and '"d"' not in wrong.output + tenant.output
