"""Authoring tool (not used at run time): give every coding in fhir_fixtures/ its display, and every coded Condition,
Procedure, Observation and MedicationRequest its `code.text`, so the sandbox's pickers and an EHR showing the
fixtures are not blank. Run after tools/build_fixtures.py, from the repository root:

    .venv/bin/python tools/fixture_displays.py

Displays come from the project's value sets (cds_service/terminology/valuesets/, each with its provenance); the few
background codes no value set holds (common comorbidities, vitals, drugs and statuses of build_fixtures.noise) are
listed below with the public code system they come from. A coding already carrying a display, and a concept already
carrying a text, are left as written. A code neither source knows stops the tool: never guess a display.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_service.terminology.valuesets import members_for  # noqa: E402

FIXTURES = ROOT / "fhir_fixtures" / "patients"
# Background codes outside the value sets, with their display in their code system.
BACKGROUND = {
    # ICD-10-CM (CMS FY2025 tabular list)
    ("http://hl7.org/fhir/sid/icd-10-cm", "E78.5"): "Hyperlipidemia, unspecified",
    ("http://hl7.org/fhir/sid/icd-10-cm", "I10"): "Essential (primary) hypertension",
    ("http://hl7.org/fhir/sid/icd-10-cm", "J45.909"): "Unspecified asthma, uncomplicated",
    ("http://hl7.org/fhir/sid/icd-10-cm", "K21.9"): "Gastro-esophageal reflux disease without esophagitis",
    # LOINC
    ("http://loinc.org", "29463-7"): "Body weight",
    ("http://loinc.org", "8480-6"): "Systolic blood pressure",
    ("http://loinc.org", "8867-4"): "Heart rate",
    # RxNorm (clinical drugs)
    ("http://www.nlm.nih.gov/research/umls/rxnorm", "197361"): "amlodipine 5 MG Oral Tablet",
    ("http://www.nlm.nih.gov/research/umls/rxnorm", "314076"): "lisinopril 10 MG Oral Tablet",
    # SNOMED CT
    ("http://snomed.info/sct", "80146002"): "Appendectomy",
    # HL7 terminology (condition-clinical, condition-ver-status)
    ("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"): "Active",
    ("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved"): "Resolved",
    ("http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error"): "Entered in Error",
    ("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted"): "Refuted",
}
CODED_TEXT = {"Condition": "code", "Procedure": "code", "Observation": "code",
              "MedicationRequest": "medicationCodeableConcept"}


def display_for(system: str, code: str) -> str:
    known = BACKGROUND.get((system, code))
    if known:
        return known
    member = next((m for m in members_for(system, code) if m.display and not m.attributes.get("match")), None)
    if member is None:
        raise SystemExit(f"no display known for {system}|{code}: add it to a value set or to BACKGROUND, with its "
                         "source")
    return member.display


def is_coding(value: dict[str, Any]) -> bool:
    """A Coding: system and code, and not a Quantity (which has a value, or a unit)."""
    return isinstance(value.get("system"), str) and isinstance(value.get("code"), str) \
        and "value" not in value and "unit" not in value


def fill(node: Any) -> None:
    if isinstance(node, dict):
        if is_coding(node) and not node.get("display"):
            node["display"] = display_for(node["system"], node["code"])
        for value in node.values():
            fill(value)
        element = CODED_TEXT.get(node.get("resourceType", ""))
        concept = node.get(element) if element else None
        if isinstance(concept, dict) and not concept.get("text"):
            first = next((c for c in concept.get("coding", ()) if isinstance(c, dict) and c.get("display")), None)
            if first:
                concept["text"] = first["display"]
    elif isinstance(node, list):
        for value in node:
            fill(value)


def main() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        text = path.read_text()
        document = json.loads(text)
        fill(document)
        indent = 1 if text.startswith('{\n "') else 2
        path.write_text(json.dumps(document, indent=indent, ensure_ascii=False) + ("\n" if text.endswith("\n") else ""))


if __name__ == "__main__":
    main()
