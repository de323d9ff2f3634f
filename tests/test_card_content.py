"""What the cards say: region-correct text and links, public sources only, CDC 2022 opioid advice, wording that never
misleads. Each test is one class of wording the clinical review found wrong (issue 22)."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

from cds_service.fixtures import load_fixtures
from cds_service.render.cards import CardRenderer
from cds_service.render.catalogue import INTERNAL_TAG, _citations, internal_tags, load_catalogue
from cds_service.state import state
from tests.clinical.builders import condition, lumbar_fbss, medication_request, procedure, run
from tests.support import call_fixture

LINKS = yaml.safe_load(resources.files("cds_service.card_templates").joinpath("links.yaml").read_bytes())
REGION_WORDS = {"lumbar": re.compile(r"\blumbar|low back", re.I), "cervical": re.compile(r"\bcervical|\bneck\b", re.I),
                "thoracic": re.compile(r"\bthoracic", re.I)}


def render(*records):
    evaluation = run(*records)
    return {card["source"]["topic"]["code"]: card
            for card in CardRenderer().render(evaluation.findings, now=evaluation.facts.now, patient_id="pat-1")}


def text(card) -> str:
    return " ".join([card["summary"], card.get("detail", ""), card["source"]["label"],
                     *(s["label"] for s in card.get("suggestions", ())),
                     *(a.get("description", "") for s in card.get("suggestions", ()) for a in s["actions"])])


# -- every card of every fixture -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def every_card(make_app_module):
    return [(fixture, card) for fixture in load_fixtures() for card in call_fixture(make_app_module, fixture)[2]]


@pytest.fixture(scope="module")
def make_app_module(tmp_path_factory):
    from cds_service import create_app  # noqa: PLC0415

    app = create_app({"INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")), "TESTING": True})
    yield app
    state(app).ledger.close()


CITED_CODE = re.compile(r"\((?:ICD|CPT|SNOMED|LOINC|RxNorm|HCPCS)[^)]*\)")


def test_no_card_cites_an_internal_document_or_id(every_card):
    for fixture, card in every_card:
        prose = CITED_CODE.sub("", text(card))  # the evidence's own codes (R32, F11.20) are the record's, not ours
        assert not INTERNAL_TAG.search(prose), (fixture.name, card["source"]["topic"]["code"])


def test_every_link_and_source_is_one_of_the_catalogue_with_its_own_label(every_card):
    catalogue = {(entry["label"], entry["url"]) for entry in LINKS.values()}
    urls = {entry["url"] for entry in LINKS.values()}
    for fixture, card in every_card:
        cited = [link for link in card["links"] if link["type"] != "smart"]  # the evidence app: test_smart_app.py
        assert cited, (fixture.name, card["source"]["topic"]["code"])
        for link in cited:
            assert (link["label"], link["url"]) in catalogue, link
        assert card["source"]["url"] in urls
        assert "Appropriateness-Criteria" not in card["source"]["url"]  # the ACR landing page names no topic


def test_cards_about_a_region_never_speak_of_another(every_card):
    checked = set()
    for fixture, card in every_card:
        code = card["source"]["topic"]["code"]
        region = next((r for r in REGION_WORDS if r in fixture.name), None)
        if region is None or code in ("miss-risk", "opioid-long-term", "opioid-order", "alt-pain-generator"):
            continue
        others = [r for r in REGION_WORDS if r != region]
        words = text(card) + " ".join(link["label"] for link in card["links"])
        for other in others:
            if region == "thoracic" and other == "lumbar":
                continue  # no ACR topic covers the thoracic spine: the card says it follows the lumbar one
            assert not REGION_WORDS[other].search(words), (fixture.name, code, other)
        checked.add((region, code))
    assert {("cervical", "fbss-imaging"), ("thoracic", "fbss-imaging"), ("cervical", "red-flag")} <= checked


def test_a_cervical_card_cites_the_cervical_acr_topic_and_no_contrast_rationale(every_card):
    cards = [card for fixture, card in every_card if "cervical" in fixture.name
             and card["source"]["topic"]["code"] == "fbss-imaging"]
    assert cards
    for card in cards:
        assert [link["url"] for link in card["links"] if link["type"] != "smart"] == [LINKS["acr-cervical"]["url"]]
        assert "epidural scar" not in card["detail"] and "variant 5" not in text(card)


# -- wording, class by class -------------------------------------------------------------------------------------------


def test_a_red_flag_without_surgery_never_says_after_surgery_and_names_the_qualifying_symptom():
    card = render(condition("G83.4", onset_days_ago=3), condition("M54.50", onset_days_ago=10))["red-flag"]
    assert card["summary"].startswith("Spine red flag: ")
    assert "surgery" not in card["summary"]
    assert "**With:**" in card["detail"] and "M54.50" in card["detail"].split("**With:**")[1]
    after = render(*lumbar_fbss(300), condition("G83.4", onset_days_ago=3))["red-flag"]
    assert after["summary"].startswith("Red flag after spine surgery: ")
    assert "63030" in after["detail"].split("**With:**")[1]


@pytest.mark.parametrize(("days", "words"), [(273, "39 weeks after spine surgery"),
                                             (800, "2 years after spine surgery"),
                                             (1600, "4 years after spine surgery")])
def test_the_interval_since_surgery_is_in_weeks_then_years(days, words):
    card = render(*lumbar_fbss(days))["fbss-imaging"]
    assert words in card["summary"] and " wk " not in card["summary"]


def test_an_unknown_surgery_date_says_so():
    card = render(condition("M96.1", onset_days_ago=None), condition("M54.16", onset_days_ago=200))["fbss-imaging"]
    assert "date not recorded" in card["summary"]


def test_a_revision_referral_for_failed_conservative_care_says_why():
    cards = render(procedure("63030", days_ago=300), condition("M54.16", onset_days_ago=250),
                   procedure("97110", days_ago=150))
    detail = cards["revision-referral"]["detail"]
    why = detail.split("**Why a surgeon should look again:**")[1].split("**")[0]
    assert "M54.16" in why
    assert "**Conservative care since the surgery:**" in detail and "97110" in detail
    assert "NICE NG59" not in text(cards["revision-referral"])


@pytest.mark.parametrize(("mimic", "si_injection"), [("M16.11", False), ("M46.1", True)])
def test_the_mimic_decides_the_evaluation_advised(mimic, si_injection):
    card = render(*lumbar_fbss(300), condition(mimic, onset_days_ago=400))["alt-pain-generator"]
    assert ("27096" in card["detail"]) is si_injection
    assert ("hip radiographs" in card["detail"]) is (not si_injection)


def test_surgical_risks_never_delay_the_referral():
    card = render(*lumbar_fbss(300), condition("I25.10", onset_days_ago=900))["miss-risk"]
    assert "before surgical referral" not in text(card)
    assert "not a reason to delay the referral" in card["detail"]


def test_long_term_opioid_card_is_cdc_2022_and_never_a_surgical_indication():
    card = render(*lumbar_fbss(400), medication_request("1049621", start_days_ago=120, supply_days=120))[
        "opioid-long-term"]
    words = text(card).lower()
    assert "dependence" not in words and "surgical evaluation may be appropriate" not in words
    assert "not a sign that surgery will help" in words
    for check in ("morphine milligram equivalents", "naloxone", "prescription drug monitoring program",
                  "urine drug testing", "benzodiazepines", "do not stop abruptly"):
        assert check in card["detail"], check


def test_opioid_use_disorder_without_treatment_is_offered_moud():
    card = render(*lumbar_fbss(400), medication_request("1049621", start_days_ago=120, supply_days=120),
                  condition("F11.20", onset_days_ago=300))["opioid-long-term"]
    assert "offer or arrange treatment with buprenorphine or methadone" in card["detail"]


def test_ct_is_not_offered_after_a_microdiscectomy():
    card = render(*lumbar_fbss(300))["fbss-imaging"]
    assert {s["label"] for s in card["suggestions"]} == {"Order MRI lumbar spine without and with contrast",
                                                         "Order radiographs lumbar spine incl. flexion/extension"}


def test_the_duplicate_card_offers_keeping_the_order_for_a_clinical_change():
    reasons = load_catalogue().cards["imaging-duplicate"].override_reasons
    assert any(r["code"] == "clinical-change" and r["display"].startswith("Keep the order") for r in reasons)


# -- the start-up check --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tagged", ["(seed 004, sign 5)", "per VS-19", "see clinical-rules.md", "rule R7", "§4.1"])
def test_a_template_citing_an_internal_document_is_refused(tagged):
    raw = {"summary": "Something", "detail": f"Because {tagged}.", "source": {"label": "x"}}
    assert internal_tags(raw)


def test_icd_codes_and_guideline_words_are_not_mistaken_for_internal_tags():
    raw = {"summary": "F11.20 on file", "detail": "ACR variant 5; CDC recommendation 12; NICE TA159; 50 MME/day",
           "source": {"label": "FBSS/MISS advisor"}}
    assert internal_tags(raw) == []


def test_a_link_id_not_in_the_catalogue_is_refused():
    with pytest.raises(ValueError, match=r"not in cards/links\.yaml"):
        _citations({"source": {"label": "x", "link": "acr-landing-page"}, "links": []}, LINKS, "x.yaml")
    with pytest.raises(ValueError, match="unknown region"):
        _citations({"source": {"label": "x", "link": "acr-cervical"}, "regions": {"sacral": {}}}, LINKS, "x.yaml")


# -- the alert stack -------------------------------------------------------------------------------------------------


def test_a_typical_fbss_chart_raises_at_most_two_warnings():
    """Imaging, revision referral, long-term opioids and surgical risks fire together: two stay warnings (the spine
    work-up), the others are shown as info with the same text and suggestions."""
    cards = render(procedure("63030", days_ago=400), condition("M54.16", onset_days_ago=300),
                   procedure("97110", days_ago=200), condition("I25.10", onset_days_ago=900),
                   medication_request("1049621", start_days_ago=120, supply_days=120))
    assert {"fbss-imaging", "revision-referral", "opioid-long-term", "miss-risk"} <= set(cards)
    indicators = {code: card["indicator"] for code, card in cards.items()}
    assert [code for code, indicator in indicators.items() if indicator == "warning"] == ["fbss-imaging",
                                                                                          "revision-referral"]
    assert indicators["opioid-long-term"] == indicators["miss-risk"] == "info"


def test_a_neurological_deficit_keeps_its_warning_over_the_referral():
    cards = render(*lumbar_fbss(300), condition("M51.16", onset_days_ago=100), condition("R26.2", onset_days_ago=50))
    assert cards["neuro-deficit"]["indicator"] == "warning" and cards["fbss-imaging"]["indicator"] == "warning"
    assert cards["revision-referral"]["indicator"] == "info"


def test_every_fixture_response_has_at_most_two_warnings(every_card):
    by_fixture: dict[str, list[str]] = {}
    for fixture, card in every_card:
        by_fixture.setdefault(fixture.name, []).append(card["indicator"])
    for name, indicators in by_fixture.items():
        assert indicators.count("warning") <= 2, name
        assert "critical" not in indicators or indicators == ["critical"], name


def test_value_set_displays_are_clinical_names_without_the_rules_notes():
    """A display is cited on cards (when the record has none) and shown by EHRs: the notes on how a rule reads a code
    live beside it (extension urn:spine-cds:fhir:note), never in it."""
    from cds_service.terminology.valuesets import value_sets  # noqa: PLC0415

    note = re.compile(r"\((?=[^)]*(red flag|supporting|only with|older|sequela|used for))", re.I)
    assert [(vs_id, m.code, m.display) for vs_id, vs in value_sets().items() for m in vs.members
            if note.search(m.display or "")] == []


# -- card conformance extras (issue 25) ----------------------------------------------------------------------------


def test_every_suggestion_has_a_uuid_and_deletes_only_the_calls_own_draft_orders(make_app_module):
    """Across every fixture and hook: each card and suggestion carries its own uuid; a delete names a draft order of
    the call's draftOrders (never a record of the chart, never at patient-view); a card that replaces an order pairs
    the delete with the create in one suggestion, so accepting it never leaves the order missing."""
    app = make_app_module
    seen: set[str] = set()
    for fixture in load_fixtures():
        body, _, cards = call_fixture(app, fixture)
        drafts = {f"{e['resource']['resourceType']}/{e['resource']['id']}"
                  for e in (body["context"].get("draftOrders") or {}).get("entry", ())
                  if e["resource"].get("status") == "draft"}
        for card in cards:
            uuids = [card["uuid"], *(s["uuid"] for s in card.get("suggestions", ()))]
            assert all(uuids) and not seen & set(uuids), fixture.name
            seen |= set(uuids)
            for suggestion in card.get("suggestions", ()):
                kinds = [action["type"] for action in suggestion["actions"]]
                deletes = [action["resourceId"] for action in suggestion["actions"] if action["type"] == "delete"]
                assert set(deletes) <= drafts, (fixture.name, deletes)
                if card["source"]["topic"]["code"] == "imaging-protocol":
                    assert kinds == ["delete", "create"], fixture.name
    assert len(seen) > 50


def test_card_types_are_checked_against_the_rules_at_start_up():
    from cds_service.clinical.orders import ORDER_CARD_ORDER  # noqa: PLC0415
    from cds_service.clinical.rules import CARD_ORDER  # noqa: PLC0415
    from cds_service.render.catalogue import check_card_types  # noqa: PLC0415

    catalogue = load_catalogue()
    check_card_types(catalogue, (*CARD_ORDER, *ORDER_CARD_ORDER))  # as create_app does: in step
    with pytest.raises(ValueError, match="no template for spine-gazette"):
        check_card_types(catalogue, (*CARD_ORDER, *ORDER_CARD_ORDER, "spine-gazette"))
    with pytest.raises(ValueError, match="no rule produces scs-consider"):
        check_card_types(catalogue, tuple(t for t in (*CARD_ORDER, *ORDER_CARD_ORDER) if t != "scs-consider"))


def test_a_card_type_added_in_one_place_only_stops_start_up_naming_what_is_missing(make_app, monkeypatch, tmp_path):
    """clinical/card-types.json declares every card type once; a rule firing an undeclared one (its finding would be
    dropped from every response), or a declared one no rule fires, stops create_app with the name."""
    from types import SimpleNamespace  # noqa: PLC0415

    from cds_service import app as app_module  # noqa: PLC0415
    from cds_service.clinical import orders, rules  # noqa: PLC0415
    from cds_service.clinical.knowledge import card_types, check_fired, fired_card_types  # noqa: PLC0415

    declared = card_types()
    fired = fired_card_types(rules, orders)
    assert set(fired) == {t for types in declared.values() for t in types}
    assert fired["red-flag"] == {"rules.py"} and fired["opioid-order"] == {"orders.py"}
    without = {"patient-view": tuple(t for t in declared["patient-view"] if t != "scs-consider"),
               "orders": declared["orders"]}
    monkeypatch.setattr(app_module, "card_types", lambda: without)
    with pytest.raises(ValueError, match=r"not declared: scs-consider \(fired in rules\.py\)"):
        make_app()
    source = tmp_path / "gazette.py"
    source.write_text('def rule(facts):\n    return Finding("spine-gazette", "R99", (), None, ())\n')
    gazette = SimpleNamespace(__file__=str(source), __name__="cds_service.clinical.gazette")
    with pytest.raises(ValueError, match=r"not declared: spine-gazette \(fired in gazette\.py\)"):
        check_fired(fired_card_types(rules, orders, gazette), declared)
    with pytest.raises(ValueError, match="declared but fired by no rule: spine-gazette"):
        check_fired(fired, {**declared, "orders": (*declared["orders"], "spine-gazette")})
