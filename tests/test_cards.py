"""Card rendering: the catalogue in cards/, suggestions as valid FHIR, markdown that renders as written."""

from __future__ import annotations

import dataclasses
import itertools
import re
from importlib import resources

import orjson
import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.servicerequest import ServiceRequest
from jinja2.exceptions import SecurityError

from cds_service.clinical.model import Evidence, Finding, Suggestion
from cds_service.render.cards import CONTEXT_NAMES, CardRenderer
from cds_service.render.catalogue import load_catalogue, template_variables
from cds_service.render.citation import cite
from cds_service.render.suggestions import validate_service_request
from tests.clinical.builders import (
    E,
    condition,
    imaging_report,
    lumbar_fbss,
    medication_request,
    observation,
    procedure,
    run,
)
from tests.support import assert_valid

CARD_TYPES = ["red-flag", "fbss-imaging", "revision-referral", "neuro-deficit", "chronic-pain-specialist",
              "opioid-long-term", "deformity", "alt-pain-generator", "miss-risk", "scs-consider",
              "imaging-protocol", "imaging-not-indicated", "imaging-duplicate", "opioid-order"]
CDS_HOOKS_3_REASONS = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"


def test_one_template_per_card_type():
    assert set(load_catalogue().cards) == set(CARD_TYPES)


def test_override_reasons_are_a_valid_code_system_mapped_to_cds_hooks_3():
    system = orjson.loads(resources.files("cds_service.card_templates").joinpath("override-reasons.json").read_bytes())
    CodeSystem.model_validate(system)
    known = {"indication-order-exists", "action-completed", "patient-ineligible", "patient-refuses",
             "patient-contraindication", "risk-benefit-ratio"}
    for concept in system["concept"]:
        [mapping] = concept["property"]
        assert mapping["code"] == "nonAdherenceReason" and mapping["valueCode"] in known
    assert system["property"][0]["uri"] == CDS_HOOKS_3_REASONS


@pytest.mark.parametrize("key", sorted(load_catalogue().studies) + sorted(load_catalogue().orders))
def test_every_order_a_card_can_suggest_is_a_valid_service_request(key):
    catalogue = load_catalogue()
    kind = "study" if key in catalogue.studies else "order"
    renderer = CardRenderer()
    finding = Finding("fbss-imaging", "R3", (Evidence("Condition/1", "symptom", "icd10cm", "M54.16", "Radiculopathy",
                                                      E),), "lumbar", (Suggestion(key, kind, True),))
    [card] = renderer.render([finding], now=E, patient_id="p-1")
    [suggestion] = card["suggestions"]
    resource = suggestion["actions"][0]["resource"]
    ServiceRequest.model_validate(resource)
    assert (resource["status"], resource["intent"]) == ("draft", "proposal")
    assert resource["reasonCode"][0]["coding"][0]["code"] == "M54.16"
    if kind == "study":
        systems = {c["system"] for c in resource["code"]["coding"]}
        assert "http://www.ama-assn.org/go/cpt" in systems


def test_imaging_suggestions_carry_cpt_and_loinc():
    finding = run(*lumbar_fbss(273)).finding("fbss-imaging")
    [card] = CardRenderer().render([finding], now=E, patient_id="p-1")
    mri = card["suggestions"][0]
    assert mri["isRecommended"] is True
    codings = {(c["system"], c["code"]) for c in mri["actions"][0]["resource"]["code"]["coding"]}
    assert codings == {("http://www.ama-assn.org/go/cpt", "72158"), ("http://loinc.org", "24967-2")}
    assert card["selectionBehavior"] == "any"


def test_referrals_name_the_specialty():
    finding = run(*lumbar_fbss(273), condition("M96.0", onset_days_ago=100)).finding("revision-referral")
    [card] = CardRenderer().render([finding], now=E, patient_id="p-1")
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "3457005",
                                             "display": "Patient referral"}
    assert {c["code"] for c in resource["performerType"]["coding"]} == {"207XS0117X", "207T00000X"}


def test_invalid_suggestion_resource_is_dropped_not_sent():
    assert validate_service_request({"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
                                     "subject": {"reference": "Patient/p"}}) is True
    assert validate_service_request({"resourceType": "ServiceRequest", "status": "draft",  # intent is required
                                     "subject": {"reference": "Patient/p"}}) is False
    assert validate_service_request({"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
                                     "subject": {"reference": "Patient/p"}, "priority": ["stat"]}) is False


def test_card_without_suggestions_has_no_selection_behavior():
    finding = run(*lumbar_fbss(273), condition("M46.1")).finding("alt-pain-generator")
    [card] = CardRenderer().render([finding], now=E, patient_id="p-1")
    assert "suggestions" not in card and "selectionBehavior" not in card


def _markdown_problems(detail: str) -> list[str]:
    """Lines that GitHub-flavoured markdown would not render as written (lazy list continuation, glued headings)."""
    lines = detail.splitlines()
    problems = []
    for before, line in itertools.pairwise(lines):
        if before.startswith("- ") and line and not line.startswith("- "):
            problems.append(f"paragraph glued to a list: {line[:40]}")
        if line.startswith("- ") and before and not before.startswith("- "):
            problems.append(f"list glued under a paragraph (needs a blank line): {before[:40]}")
        if line.startswith("**") and before and not before.startswith("**"):
            problems.append(f"heading glued to a paragraph: {line[:40]}")
    return problems


def test_rendered_details_are_well_formed_markdown():
    # Conservative care rather than a structural cause (pseudarthrosis) leads to revision referral here, so that
    # the stimulator card (which a structural cause rules out) is rendered too.
    evaluation = run(procedure("22612", days_ago=400), procedure("63030", days_ago=800),
                     condition("M54.16", onset_days_ago=200), medication_request("198014", start_days_ago=300,
                                                                                 supply_days=200),
                     condition("R26.2"), condition("M41.26"), condition("M46.1"), condition("I25.10"),
                     observation("72514-3", 7, "{score}", days_ago=3), imaging_report("72158", days_ago=250),
                     observation("4548-4", 7.4, "%"))
    cards = CardRenderer().render(evaluation.findings, now=E, patient_id="p-1", unavailable=["imagingStudies"])
    assert len(cards) >= 7
    assert_valid({"cards": cards}, "cds-hooks-2.0-response")
    for card in cards:
        assert _markdown_problems(card["detail"]) == [], card["source"]["topic"]["code"]
        assert not re.search(r"\{\{|\{%|None", card["detail"] + card["summary"])


def test_a_template_reads_only_names_the_renderer_builds_and_the_renderer_builds_only_those():
    catalogue = load_catalogue()
    environment = catalogue.cards["miss-risk"].summary.environment
    # The partial's variables count: `unavailable` is read only inside the included partial.
    assert template_variables(environment, "{{ d.x }}", '{% include "unavailable" %}') == {"d", "unavailable"}
    assert catalogue.cards["miss-risk"].variables == {"d", "orders", "risk_names", "risks", "unavailable"}
    for template in catalogue.cards.values():
        assert template.variables <= CONTEXT_NAMES
    context = CardRenderer._context(Finding("miss-risk", "O1", ()), E, [], catalogue.cards["miss-risk"])
    assert set(context) == {"region", "d", "unavailable", "t", "orders", "risks", "risk_names"}


@pytest.mark.parametrize("card_type", CARD_TYPES)
def test_every_name_a_template_reads_is_built_for_its_cards(card_type):
    template = load_catalogue().cards[card_type]
    context = CardRenderer._context(Finding(card_type, "R1", ()), E, [], template)
    assert template.variables <= set(context) | set(template.summary.environment.globals)
    assert set(CardRenderer._context(Finding(card_type, "R1", ()), E, [], dataclasses.replace(
        template, variables=CONTEXT_NAMES))) == CONTEXT_NAMES  # every name the start-up check allows can be built


def test_card_templates_render_in_the_sandbox_with_their_globals_as_one_dict():
    """Plain-dict globals (CardTemplateEnvironment) change how a context is built, not what templates may do."""
    catalogue = load_catalogue()
    environment = catalogue.cards["miss-risk"].summary.environment
    for template in catalogue.cards.values():
        for part in (template.summary, template.detail):
            assert type(part.globals) is dict
            assert part.globals == dict(environment.globals)
    assert type(environment.get_template("unavailable").globals) is dict
    with pytest.raises(SecurityError):
        environment.from_string("{{ d.__class__.__subclasses__() }}").render(d={})


def test_a_template_reading_an_unknown_name_is_refused_at_start_up():
    catalogue = load_catalogue()
    template = catalogue.cards["red-flag"]
    environment = template.summary.environment
    source = "Red flag for {{ patient_name }}"
    broken = dataclasses.replace(template, summary=environment.from_string(source),
                                 variables=template_variables(environment, source, "{{ d.x }}"))
    with pytest.raises(ValueError, match=r"red-flag.*patient_name"):
        CardRenderer(dataclasses.replace(catalogue, cards={**catalogue.cards, "red-flag": broken}))


def test_an_order_that_is_not_a_valid_service_request_is_refused_at_start_up():
    """Checked once when the service starts, rather than dropped (and logged) from every card that suggests it."""
    catalogue = load_catalogue()
    broken = {**catalogue.orders, "referral-spine-surgeon": {**catalogue.orders["referral-spine-surgeon"],
                                                              "performerType": "spine surgeon"}}
    with pytest.raises(ValueError, match=r"orders.yaml.*referral-spine-surgeon"):
        CardRenderer(dataclasses.replace(catalogue, orders=broken))


def test_citation_format():
    ev = Evidence("Procedure/1", "spine surgery", "cpt", "63030", "Lumbar laminotomy", E.replace(year=2024, month=9))
    assert cite(ev, E) == "Lumbar laminotomy (CPT 63030) on 2024-09-01, 273 days ago"
    undated = Evidence("Condition/2", "x", "icd10cm", "M96.1", "Postlaminectomy syndrome", None)
    assert cite(undated, E) == "Postlaminectomy syndrome (ICD-10-CM M96.1), date not recorded"
    valued = Evidence("Observation/3", "HbA1c", "loinc", "4548-4", "HbA1c", E, "8.4 %")
    assert cite(valued, E) == "HbA1c: 8.4 % (LOINC 4548-4) on 2025-06-01, today"


def test_record_text_cannot_inject_markdown_or_html():
    ev = Evidence("Condition/1", "x", "icd10cm", "M54.16", "<script>x</script> **bold** [link](http://x)", E)
    cited = cite(ev, E)
    assert "<script>" not in cited and "[link](" not in cited and "**bold**" not in cited
    assert r"\<script\>" in cited and r"\[link\]" in cited
