"""Every fixture patient through POST /cds-services/fbss-miss-advisor, with prefetch from the service's templates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from cds_service.fixtures import load_fixtures, suggested_codes
from cds_service.hooks.draft_orders import parse_draft_orders
from cds_service.services import patient_view
from cds_service.state import state
from tests.support import call_fixture

FIXTURES = load_fixtures()
TOLERATED = {"reasonCode sent as an object, not an array"}
LATER = datetime(2026, 11, 22, 12, tzinfo=UTC)  # a pinned "today", far from the anchor: fixtures must not age


def test_there_are_at_least_24_fixtures_covering_every_card_type_of_every_hook():
    assert len(FIXTURES) >= 24
    for hook, types in {
        "patient-view": {"red-flag", "fbss-imaging", "revision-referral", "neuro-deficit", "chronic-pain-specialist",
                         "opioid-long-term", "deformity", "alt-pain-generator", "miss-risk", "scs-consider"},
        "order-select": {"imaging-protocol", "opioid-order"},
        "order-sign": {"red-flag", "imaging-protocol", "imaging-not-indicated", "imaging-duplicate", "opioid-order",
                       "miss-risk"},
    }.items():
        of_hook = [f for f in FIXTURES if f.expected["hook"] == hook]
        assert {card["type"] for f in of_hook for card in f.expected["cards"]} == types, hook
        assert any(not f.expected["cards"] for f in of_hook), hook  # nearest non-firing cases


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_fixture_is_valid_fhir_r4(fixture):
    Bundle.model_validate(fixture.bundle)
    for entry in fixture.bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    rolled = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in fixture.resources(LATER)]}
    Bundle.model_validate(rolled)
    if fixture.draft_orders is not None:
        # Draft orders are FHIR R4, except the deviations real clients send, which the service records and normalises.
        orders = parse_draft_orders(fixture.draft_orders)
        assert orders and all(d in TOLERATED for order in orders for d in order.deviations)
        if not any(order.deviations for order in orders):
            Bundle.model_validate(fixture.draft_orders)


def _codings_without_display(node, path="") -> list[str]:
    if isinstance(node, dict):
        found = [path] if isinstance(node.get("system"), str) and isinstance(node.get("code"), str) \
            and "value" not in node and "unit" not in node and not node.get("display") else []
        return found + [p for key, value in node.items() for p in _codings_without_display(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [p for index, value in enumerate(node) for p in _codings_without_display(value, f"{path}[{index}]")]
    return []


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_every_coded_element_carries_its_display_and_coded_resources_their_text(fixture):
    """What the sandbox's pickers and an EHR show: never a blank code (tools/fixture_displays.py)."""
    assert _codings_without_display(fixture.bundle) == []
    assert _codings_without_display(fixture.expected) == []
    for entry in fixture.bundle["entry"]:
        resource = entry["resource"]
        element = {"Condition": "code", "Procedure": "code", "Observation": "code",
                   "MedicationRequest": "medicationCodeableConcept"}.get(resource["resourceType"])
        if element and resource.get(element, {}).get("coding"):
            assert resource[element].get("text"), (resource["resourceType"], resource["id"])


def _call(app, fixture, at):
    _, response, cards = call_fixture(app, fixture, at)  # the client also validates the strict response schema
    return response, cards


@pytest.mark.parametrize("when", ["anchor", "later"])
@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_fixture_gives_its_expected_cards(app, fixture, when):
    at = fixture.anchor if when == "anchor" else LATER
    _, cards = _call(app, fixture, at)  # the client also validates against the strict response schema
    assert [card["source"]["topic"]["code"] for card in cards] == [c["type"] for c in fixture.expected["cards"]]
    for card, expected in zip(cards, fixture.expected["cards"], strict=True):
        assert card["indicator"] == expected["indicator"]
        codes = suggested_codes(card)
        assert set(expected["mustSuggest"]) <= codes, card["source"]["topic"]["code"]
        assert not set(expected["mustNotSuggest"]) & codes, card["source"]["topic"]["code"]
        assert len(card["summary"]) < 140
        assert card["source"]["topic"]["system"] == "urn:spine-cds:card-type"
        assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"])
        assert any(link["type"] == "absolute" for link in card["links"])  # the guideline it cites
        [app] = [link for link in card["links"] if link["type"] == "smart"]  # the evidence app, naming the card
        assert orjson.loads(app["appContext"])["card"] == card["uuid"] and app["autolaunchable"] is False


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_no_phi_in_any_card(app, fixture):
    response, cards = _call(app, fixture, fixture.anchor)
    text = response.get_data(as_text=True)
    patient = fixture.bundle["entry"][0]["resource"]
    assert patient["name"][0]["family"] not in text and patient["name"][0]["given"][0] not in text
    assert patient["identifier"][0]["value"] not in text and patient["birthDate"] not in text
    for card in cards:  # the patient id appears only as the subject of the orders a suggestion creates
        prose = " ".join([card["summary"], card.get("detail", "")] + [s["label"] for s in card.get("suggestions", [])])
        assert fixture.patient_id not in prose
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if action["type"] == "create":
                    assert action["resource"]["subject"] == {"reference": f"Patient/{fixture.patient_id}"}


def test_uuids_are_fresh_on_every_card_and_suggestion(app):
    fixture = next(f for f in FIXTURES if len(f.expected["cards"]) >= 3)
    seen = []
    for _ in range(2):
        _, cards = _call(app, fixture, fixture.anchor)
        seen += [card["uuid"] for card in cards] + [s["uuid"] for card in cards for s in card.get("suggestions", [])]
    assert len(seen) == len(set(seen)) > 6
    # Time-ordered (version 7): the ledger's keys then go to the end of its indexes (cds_service.ids).
    assert all(uuid.UUID(u).version == 7 and str(uuid.UUID(u)) == u for u in seen)


def test_identical_requests_give_identical_advice(app):
    fixture = FIXTURES[7]

    def advice():
        _, cards = _call(app, fixture, fixture.anchor)
        return [(c["source"]["topic"]["code"], sorted(suggested_codes(c)), c["summary"], c["detail"]) for c in cards]

    assert advice() == advice()


def test_detail_cites_evidence_with_dates(app):
    fixture = next(f for f in FIXTURES if f.name.endswith("fbss-lumbar-classic"))
    _, cards = _call(app, fixture, fixture.anchor)
    detail = cards[0]["detail"]
    assert "CPT 63030" in detail and "2024-09-01, 273 days ago" in detail
    assert "ICD-10-CM M54.16" in detail


def test_detail_says_which_data_was_unavailable(app):
    fixture = next(f for f in FIXTURES if f.name.endswith("fbss-lumbar-classic"))
    state(app).clock = lambda: fixture.anchor
    body = fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)
    del body["prefetch"]["observations"]
    body["prefetch"]["medicationRequests"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "timeout", "diagnostics": "medication search timed out"}]}
    cards = orjson.loads(app.test_client().post("/cds-services/fbss-miss-advisor", json=body).get_data())["cards"]
    assert "Not available for this evaluation" in cards[0]["detail"]
    assert "observations" in cards[0]["detail"] and "medication orders" in cards[0]["detail"]
