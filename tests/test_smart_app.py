"""The evidence app (SMART on FHIR, served under /smart/) and the cards' links to it.

Through HTTP for the links and the served files; in headless Chromium for the launches: an EHR launch and a standalone
launch against the fixtures FHIR server, behind a small SMART authorization server written here (it records what it
was asked and issues a token whose response carries the card's appContext, as an EHR does).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import pytest
from flask import jsonify, redirect, request
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import cds_service
from cds_service.fixtures import find_fixture
from cds_service.sandbox.fhir_server import create_fixtures_server
from cds_service.services import patient_view
from cds_service.state import state
from tests.browser import ARTIFACTS, headless_chromium, requires_browser
from tests.issuer import LOCAL_ROOT, Issuer, bearer, trusted_issuers_file
from tests.test_sandbox import Served

PV = "/cds-services/fbss-miss-advisor"
RECURRENT = find_fixture("07-recurrent-herniation")  # fbss-imaging and revision-referral, surgery and imaging on file
APP = Path(cds_service.__file__).parent / "smart"
FHIR_CLIENT_SHA256 = "658dec434e308a6ba682158f1e94bfaa0f600bb500e78443369bfe7818133d90"  # fhirclient 2.6.3, npm


def cards_of(app, fixture=RECURRENT, headers=None) -> list[dict]:
    state(app).clock = lambda: fixture.anchor
    body = fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)
    body["fhirServer"] = "https://ehr.example.org/fhir"
    response = app.test_client().post(PV, json=body, headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    return orjson.loads(response.get_data())["cards"]


def app_links(card) -> list[dict]:
    return [link for link in card.get("links", []) if "/smart/" in link["url"]]


def test_every_card_links_to_the_evidence_app_with_an_app_context_naming_it(app):
    cards = cards_of(app)
    assert [c["source"]["topic"]["code"] for c in cards] == ["fbss-imaging", "revision-referral"]
    for card in cards:
        [link] = app_links(card)
        assert link["type"] == "smart" and link["autolaunchable"] is False
        assert link["url"] == "http://localhost/smart/launch.html"
        context = orjson.loads(link["appContext"])
        assert context["card"] == card["uuid"] and context["type"] == card["source"]["topic"]["code"]
        assert context["evidence"] and all("/" in reference for reference in context["evidence"])
        assert any(reference.startswith("Procedure/") for reference in context["evidence"])  # the surgery cited


SITE = Issuer("https://site-ehr.example.org", "ES384")


@pytest.mark.parametrize(("mode", "expected"), [("absolute", "absolute"), ("none", None)])
def test_a_client_without_smart_links_gets_an_absolute_link_or_none(make_app, tmp_path, mode, expected):
    entry = SITE.config(site_options={"*": {"app_link": mode}})
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=trusted_issuers_file(tmp_path / "i.json", entry),
                   PUBLIC_BASE_URL=LOCAL_ROOT, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    cards = cards_of(app, headers=bearer(SITE.token(LOCAL_ROOT + PV)))
    links = [link for card in cards for link in app_links(card)]
    if expected is None:
        assert links == []
        return
    assert {link["type"] for link in links} == {"absolute"} and len(links) == len(cards)
    query = parse_qs(urlsplit(links[0]["url"]).query)
    assert query["iss"] == ["https://ehr.example.org/fhir"] and query["card"] == ["fbss-imaging"]
    assert links[0]["url"].startswith(LOCAL_ROOT + "/smart/launch.html?")


def test_a_link_allowlist_keeps_the_services_own_app_link(make_app, tmp_path):
    entry = SITE.config(site_options={"*": {"link_allowlist": ["https://intranet.example.org/"]}})
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=trusted_issuers_file(tmp_path / "i.json", entry),
                   PUBLIC_BASE_URL=LOCAL_ROOT, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    for card in cards_of(app, headers=bearer(SITE.token(LOCAL_ROOT + PV))):
        assert [link["type"] for link in card["links"]] == ["smart"]  # the guideline links went, the app's stayed


def test_the_app_files_and_its_configuration_are_served(app):
    client = app.test_client()
    launch = client.get("/smart/launch.html")
    assert launch.status_code == 200 and launch.mimetype == "text/html"
    assert "frame-ancestors" in launch.headers["Content-Security-Policy"]
    script = client.get("/smart/fhir-client.pure.min.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    config = orjson.loads(client.get("/smart/config.json").get_data())
    assert config["clientId"] and "launch" in config["ehrScope"].split()
    assert "launch/patient" in config["standaloneScope"].split()
    assert all(scope.startswith(("patient/", "launch", "openid", "fhirUser")) for scope in config["ehrScope"].split())
    missing = client.get("/smart/../app.py")
    assert missing.status_code == 404
    assert client.get("/smart/nothing.js").status_code == 404


def test_the_vendored_smart_client_library_is_the_release_named():
    data = (APP / "fhir-client.pure.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == FHIR_CLIENT_SHA256
    assert "Apache License" in (APP / "fhir-client.LICENSE.txt").read_text()


READS = ("/Condition", "/Procedure", "/ImagingStudy", "/DiagnosticReport", "/ServiceRequest", "/MedicationRequest",
         "/MedicationStatement")


class SmartEhr:
    """The fixtures FHIR server with a SMART authorization server in front: /authorize redirects back with a code,
    /token answers with the patient and the appContext the launch was registered with; FHIR reads need the token."""

    def __init__(self, fixture) -> None:
        self.fhir = create_fixtures_server(at=fixture.anchor)
        self.patient = fixture.patient_id
        self.launches: dict[str, str] = {}
        self.token = uuid.uuid4().hex
        self.authorize_requests: list[dict] = []
        self.reads: list[tuple[str, str | None]] = []
        self._codes: dict[str, str | None] = {}
        fhir = self.fhir

        @fhir.before_request
        def _guard():
            if request.method != "OPTIONS" and request.path.startswith(READS):
                self.reads.append((request.path, request.headers.get("Authorization")))
                if request.headers.get("Authorization") != f"Bearer {self.token}":
                    return jsonify({"resourceType": "OperationOutcome", "issue": [
                        {"severity": "error", "code": "login"}]}), 401
            return None

        @fhir.get("/.well-known/smart-configuration")
        def _smart_configuration():
            base = request.host_url.rstrip("/")
            return jsonify({"authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
                            "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                                             "context-ehr-patient", "context-standalone-patient"]})

        @fhir.get("/authorize")
        def _authorize():
            self.authorize_requests.append(dict(request.args))
            code = uuid.uuid4().hex
            self._codes[code] = request.args.get("launch")
            back = urlencode({"code": code, "state": request.args["state"]})
            return redirect(f"{request.args['redirect_uri']}?{back}")

        @fhir.post("/token")
        def _token():
            launch = self._codes.pop(request.form.get("code", ""), "missing")
            if launch == "missing":
                return jsonify({"error": "invalid_grant"}), 400
            answer = {"access_token": self.token, "token_type": "Bearer", "expires_in": 300,
                      "scope": request.form.get("scope", ""), "patient": self.patient}
            if launch is not None and launch in self.launches:
                answer["appContext"] = self.launches[launch]
            return jsonify(answer)


def rows(driver) -> list[dict]:
    return [{"reference": tr.get_attribute("data-reference"), "cited": "cited" in (tr.get_attribute("class") or ""),
             "date": tr.find_element(By.CLASS_NAME, "date").text, "kind": tr.find_element(By.CLASS_NAME, "kind").text,
             "what": tr.find_element(By.CLASS_NAME, "what").text,
             "status": tr.find_element(By.CLASS_NAME, "status").text,
             "not_fact": "not-fact" in (tr.get_attribute("class") or "")}
            for tr in driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")]


@requires_browser
@pytest.mark.parametrize("launch", ["ehr", "standalone"])
def test_the_app_launched_from_a_card_shows_the_timeline_with_the_cited_evidence_marked(app, tmp_path, launch):
    card = cards_of(app)[0]
    [link] = app_links(card)
    ehr = SmartEhr(RECURRENT)
    fhir = Served(ehr.fhir)
    service = Served(app)
    driver = headless_chromium(tmp_path / "chrome", "1200,1400")
    try:
        params = {"iss": fhir.url}
        if launch == "ehr":
            ehr.launches["L-1"] = link["appContext"]
            params["launch"] = "L-1"
        driver.get(f"{service.url}/smart/launch.html?{urlencode(params)}")
        WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
            lambda d: "index.html" in d.current_url and (d.find_element(By.ID, "status").text.endswith("entries")
                                                          or "could not" in d.find_element(By.ID, "status").text))
        status = driver.find_element(By.ID, "status").text
        assert "could not" not in status, status
        shown = rows(driver)
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / f"smart-app-{launch}.png"))
    finally:
        driver.quit()
        service.close()
        fhir.close()
    [asked] = ehr.authorize_requests
    assert asked["aud"] == fhir.url and asked["client_id"]
    assert ("launch" in asked) == (launch == "ehr")
    assert ("launch/patient" in asked["scope"].split()) == (launch == "standalone")
    assert ehr.reads and all(header == f"Bearer {ehr.token}" for _, header in ehr.reads)
    kinds = {row["kind"] for row in shown}
    assert {"Surgery or procedure", "Symptom or diagnosis"} <= kinds
    assert any(row["kind"].startswith("Imaging") for row in shown)
    assert any("(onset)" in row["what"] for row in shown)
    dates = [row["date"] for row in shown if row["date"] != "date unknown"]
    assert dates == sorted(dates, reverse=True)
    by_reference = {row["reference"]: row for row in shown}
    # The record's own statuses: an entry in error is left out, a refuted diagnosis or a procedure not done is shown
    # as such (struck through), never as a fact.
    assert "Condition/fx07-cond-221" not in by_reference and "MedicationRequest/fx07-mr-229" not in by_reference
    refuted = by_reference["Condition/fx07-cond-220"]  # cauda equina syndrome, refuted
    assert refuted["not_fact"] and "refuted" in refuted["status"]
    not_done = by_reference["Procedure/fx07-proc-231"]  # the repeat microdiscectomy, not done
    assert not_done["not_fact"] and "not-done" in not_done["status"]
    assert by_reference["Condition/fx07-cond-212"]["status"] == "resolved"
    assert not by_reference["Procedure/fx07-proc-13"]["not_fact"]
    cited = {row["reference"] for row in shown if row["cited"]}
    if launch == "ehr":
        assert cited == set(orjson.loads(link["appContext"])["evidence"]) & {row["reference"] for row in shown}
        assert cited
    else:
        assert cited == set()  # no card named: nothing marked
