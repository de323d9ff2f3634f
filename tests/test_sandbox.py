"""Sandbox tools over real HTTP: the fixtures FHIR server, a hook fed entirely by it, and the built-in page."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select
from werkzeug.serving import make_server

from cds_service.fixtures import find_fixture, load_fixtures, suggested_codes
from cds_service.sandbox.fhir_server import create_fixtures_server
from cds_service.state import state
from cds_service.storage.models import Feedback, IssuedCard
from tests.browser import ARTIFACTS, headless_chromium, requires_browser

TODAY = find_fixture("01").anchor  # the fixtures server rolls dates to the instant the tests pin


class Served:
    """A WSGI app on a real loopback port, in a thread."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def fhir():
    served = Served(create_fixtures_server(at=TODAY))
    yield served.url
    served.close()


def test_metadata_is_an_r4_capability_statement(fhir):
    response = requests.get(f"{fhir}/metadata", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/fhir+json")
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    assert {"Patient", "Condition", "Procedure", "Observation"} <= {r["type"] for r in statement["rest"][0]["resource"]}


def test_read_a_patient_with_given_names_as_an_array(fhir):
    patient = requests.get(f"{fhir}/Patient/fx07", timeout=5).json()
    assert patient["resourceType"] == "Patient" and isinstance(patient["name"][0]["given"], list)
    missing = requests.get(f"{fhir}/Patient/nobody", timeout=5)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


def test_list_patients(fhir):
    bundle = requests.get(f"{fhir}/Patient", timeout=5).json()
    assert bundle["total"] == len(load_fixtures()) and len(bundle["entry"]) == bundle["total"]


def test_search_by_patient_code_and_status_with_total(fhir):
    conditions = requests.get(f"{fhir}/Condition", params={"patient": "fx07"}, timeout=5).json()
    assert conditions["type"] == "searchset" and conditions["total"] == len(conditions["entry"]) > 3
    a1c = requests.get(f"{fhir}/Observation", params={"patient": "fx08", "code": "http://loinc.org|4548-4"},
                       timeout=5).json()
    assert a1c["total"] == 1
    active = requests.get(f"{fhir}/Condition", params={"patient": "fx07", "clinical-status": "active"},
                          timeout=5).json()
    assert 0 < active["total"] < conditions["total"]
    completed = requests.get(f"{fhir}/Procedure", params={"subject": "Patient/fx07", "status": "completed"},
                             timeout=5).json()
    assert all(e["resource"]["status"] == "completed" for e in completed["entry"])


def test_paging_follows_next_links_to_every_entry(fhir):
    url = f"{fhir}/Condition?patient=fx07&_count=2"
    seen, pages = [], 0
    while url:
        page = requests.get(url, timeout=5).json()
        pages += 1
        seen += [e["resource"]["id"] for e in page["entry"]]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert pages >= 3 and len(seen) == len(set(seen)) == page["total"]


def test_post_search_with_a_form_body(fhir):
    bundle = requests.post(f"{fhir}/Condition/_search", data={"patient": "fx07"}, timeout=5).json()
    assert bundle["total"] == requests.get(f"{fhir}/Condition", params={"patient": "fx07"}, timeout=5).json()["total"]


def test_cors_on_everything(fhir):
    preflight = requests.options(f"{fhir}/Condition", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"}, timeout=5)
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
    read = requests.get(f"{fhir}/Patient/fx01", headers={"Origin": "https://sandbox.cds-hooks.org"}, timeout=5)
    assert read.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")


def test_a_hook_call_fed_entirely_by_the_fixtures_server(app, fhir):
    """No prefetch, no token: the service reads everything from the fixtures server over real HTTP (local profile)."""
    for name in ("recurrent-herniation", "pseudarthrosis-with-risks", "chronic-low-back-pain"):
        fixture = find_fixture(name)
        state(app).clock = lambda: TODAY
        body = {"hook": "patient-view", "hookInstance": "0b7e4d64-2d5e-4a89-8f56-1c1e4a5d7a3b",
                "fhirServer": fhir, "context": {"userId": "Practitioner/sandbox", "patientId": fixture.patient_id}}
        response = app.test_client().post("/cds-services/fbss-miss-advisor", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        cards = orjson.loads(response.get_data())["cards"]
        assert [c["source"]["topic"]["code"] for c in cards] == [c["type"] for c in fixture.expected["cards"]]
        for card, expected in zip(cards, fixture.expected["cards"], strict=True):
            assert set(expected["mustSuggest"]) <= suggested_codes(card)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_fixtures_server_command(tmp_path):
    port = _free_port()
    script = Path(sys.executable).with_name("cds-service")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cds_service"]
    process = subprocess.Popen([*command, "fixtures-server", "--port", str(port), "--at", "2026-11-22"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                statement = requests.get(f"http://127.0.0.1:{port}/metadata", timeout=1).json()
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert statement["fhirVersion"] == "4.0.1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_sandbox_page_is_not_served_in_production(make_app):
    assert make_app(PROFILE="production").test_client().get("/sandbox").status_code == 404


@requires_browser
def test_the_sandbox_page_in_headless_chromium(app, tmp_path):
    state(app).clock = lambda: TODAY
    served = Served(app)
    driver = headless_chromium(tmp_path / "chrome", "1200,1600")
    try:
        driver.get(f"{served.url}/sandbox")
        Select(driver.find_element(By.ID, "patient")).select_by_value("07-recurrent-herniation")
        Select(driver.find_element(By.ID, "hook")).select_by_visible_text("patient-view")
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 10).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".card")))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert [c.get_attribute("data-card-type") for c in cards] == ["fbss-imaging", "revision-referral"]
        assert "warning" in cards[0].get_attribute("class")
        assert "Radiculopathy, lumbar region" in cards[0].find_element(By.CLASS_NAME, "detail").text
        card_uuid = cards[0].get_attribute("data-uuid")
        accept = cards[0].find_element(By.CSS_SELECTOR, "button.accept.recommended")
        assert "MRI lumbar spine without and with contrast" in accept.text
        accept.click()
        WebDriverWait(driver, 10).until(lambda d: "Feedback recorded" in cards[0].find_element(
            By.CLASS_NAME, "status").text)
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "sandbox.png"))
    finally:
        driver.quit()
        served.close()
    state(app).ledger.flush()
    with state(app).database.connect() as connection:
        [row] = connection.execute(select(Feedback)).all()
        issued = connection.execute(select(IssuedCard.card_type).where(IssuedCard.card_uuid == card_uuid)).scalar()
    assert (row.outcome, row.card_uuid) == ("accepted", card_uuid)
    assert issued == "fbss-imaging"
