"""Authoring tool (not used at run time or in tests): write the synthetic patients of fhir_fixtures/.

Each fixture is a FHIR R4 Bundle (type collection) written against the anchor date 2025-06-01T12:00:00Z, with its
expected result beside it. The expectations below are written by hand from the clinical specification — never
computed by the engine — so the fixture tests can fail. Run from the repository root:

    .venv/bin/python tools/build_fixtures.py && .venv/bin/python tools/fixture_displays.py

(the second gives every coding its display and each coded resource its `code.text`, from the value sets).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.clinical.builders import (  # noqa: E402
    E,
    code,
    condition,
    day,
    imaging_report,
    medication_request,
    observation,
    procedure,
    service_request,
)

OUT = ROOT / "fhir_fixtures" / "patients"
ANCHOR = E.isoformat().replace("+00:00", "Z")
NAMES = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Harper", "Jordan", "Kendall", "Logan", "Morgan",
         "Parker", "Quinn", "Riley", "Rowan", "Sawyer", "Skyler", "Taylor", "Reese", "Hayden", "Jamie", "Drew",
         "Sage", "Ellis", "Marlowe", "Arden", "Blair", "Corey", "Dana", "Lane"]


def noise(n: int) -> list[dict[str, Any]]:
    """Realistic background: hypertension, hyperlipidaemia, GERD, vitals, common drugs, an old appendectomy."""
    items = [
        condition("I10", onset_days_ago=2000 + n),
        condition("E78.5", onset_days_ago=1500 + n),
        condition("K21.9", onset_days_ago=900, clinical="resolved"),
        observation("8867-4", 72 + n % 10, "/min", days_ago=15),
        observation("8480-6", 128 + n % 7, "mm[Hg]", days_ago=15),
        observation("29463-7", 82.5, "kg", days_ago=15),
        medication_request("197361", start_days_ago=60, supply_days=90),   # amlodipine 5 mg
        medication_request("314076", start_days_ago=300, supply_days=90, status="completed"),  # lisinopril 10 mg
        procedure("80146002", system="sct", days_ago=7000),                 # appendectomy
    ]
    if n % 3 == 0:
        items.append(condition("J45.909", onset_days_ago=5000))
    if n % 2 == 1:
        items += invalid_records()
    return items


def invalid_records() -> list[dict[str, Any]]:
    """Records every validity filter must drop (clinical-rules 2.2). Counted, each would change the cards: a red
    flag, an uncontrolled-diabetes risk, an MRI on file, long-term opioids, a BMI of 45."""
    absent = observation("39156-5", 45.0, "kg/m2", days_ago=20)
    absent["dataAbsentReason"] = {"text": "measurement error"}
    del absent["valueQuantity"]
    return [
        condition("G83.4", onset_days_ago=3, verification="refuted"),
        condition("T81.41XA", onset_days_ago=3, verification="entered-in-error"),
        observation("4548-4", 11.2, "%", days_ago=25, status="entered-in-error"),
        observation("4548-4", 10.4, "%", days_ago=20, status="cancelled"),
        absent,
        imaging_report("72158", days_ago=15, status="entered-in-error"),
        imaging_report("72114", days_ago=15, status="registered"),
        service_request("72158", days_ago=5, status="draft"),
        service_request("72114", days_ago=5, status="revoked"),
        {"resourceType": "ImagingStudy", "id": "is-invalid", "status": "registered",
         "subject": {"reference": "Patient/pat-1"}, "started": day(12),
         "procedureCode": [code("cpt", "72131")]},
        medication_request("1049621", start_days_ago=200, supply_days=200, status="draft"),
        medication_request("1049621", start_days_ago=200, supply_days=200, status="entered-in-error"),
        medication_request("1049621", start_days_ago=200, supply_days=200, intent="proposal"),
        {"resourceType": "MedicationStatement", "id": "ms-not-taken", "status": "not-taken",
         "medicationCodeableConcept": code("rxnorm", "1049621"), "subject": {"reference": "Patient/pat-1"},
         "effectivePeriod": {"start": day(200)}},
        procedure("63030", days_ago=10, status="not-done"),
        procedure("22612", days_ago=15, status="in-progress"),
    ]


def card(type_: str, indicator: str, must: tuple[str, ...] = (), must_not: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": type_, "indicator": indicator, "mustSuggest": list(must), "mustNotSuggest": list(must_not)}


LUMBAR_STUDIES_OF_OTHER_REGIONS = ("72141", "72156", "72157")
CERVICAL_STUDIES_OF_OTHER_REGIONS = ("72158", "72148", "72114", "72157")

FIXTURES: list[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("fbss-lumbar-classic", "Lumbar microdiscectomy 273 days ago; lumbar radiculopathy since: FBSS imaging.",
     [procedure("63030", days_ago=273), condition("M54.16", onset_days_ago=60)],
     [card("fbss-imaging", "warning", ("72158", "72114"), LUMBAR_STUDIES_OF_OTHER_REGIONS)]),
    ("fbss-cervical-acdf", "ACDF 200 days ago with cervical radiculopathy: cervical studies only.",
     [procedure("22551", days_ago=200), condition("M54.12", onset_days_ago=45)],
     [card("fbss-imaging", "warning", ("72141", "72050"), CERVICAL_STUDIES_OF_OTHER_REGIONS)]),
    ("fbss-thoracic", "Thoracic decompression 150 days ago with thoracic radiculopathy.",
     [procedure("63046", days_ago=150), condition("M54.14", onset_days_ago=40)],
     [card("fbss-imaging", "warning", ("72157",), ("72158", "72141"))]),
    ("early-post-op-41-days", "Laminotomy 41 days ago with new radicular pain: normal recovery, no card (R2).",
     [procedure("63030", days_ago=41), condition("M54.16", onset_days_ago=30)],
     []),
    ("new-radiculopathy-8-weeks", "Laminotomy 56 days ago; new radiculopathy after surgery (ACR variant 5).",
     [procedure("63030", days_ago=56), condition("M54.16", onset_days_ago=30)],
     [card("fbss-imaging", "warning", ("72158",))]),
    ("ten-weeks-old-back-pain", "Laminotomy 70 days ago; only the back pain that preceded surgery: not yet FBSS.",
     [procedure("63030", days_ago=70), condition("M54.50", onset_days_ago=400)],
     []),
    ("recurrent-herniation", "Microdiscectomy 273 days ago, new lumbar disc herniation, physical therapy since.",
     [procedure("63030", days_ago=273), condition("M54.16", onset_days_ago=120),
      condition("M51.26", onset_days_ago=100), procedure("97110", days_ago=90)],
     [card("fbss-imaging", "warning", ("72158",)), card("revision-referral", "warning", ("3457005",))]),
    ("pseudarthrosis-with-risks", "ICD-10-PCS lumbar fusion with same-day add-on; pseudarthrosis; HbA1c 8.6 %, "
     "BMI 37.2, current smoker, coronary disease.",
     [procedure("0SG00AJ", system="pcs", days_ago=400), procedure("22614", days_ago=400),
      condition("M96.0", onset_days_ago=150), condition("M54.16", onset_days_ago=200),
      observation("4548-4", 8.6, "%", days_ago=30), observation("39156-5", 37.2, "kg/m2", days_ago=60),
      observation("72166-2", answer=("449868002", "Current every day smoker"), days_ago=90),
      condition("I25.10", onset_days_ago=1200)],
     [card("fbss-imaging", "warning", ("72158",)), card("revision-referral", "warning", ("3457005",)),
      card("miss-risk", "info", ("4548-4",))]),  # a third warning: shown as info (cards/stack.yaml)
    ("adjacent-segment-disease", "TLIF two years ago; lumbar stenosis with neurogenic claudication since.",
     [procedure("22633", days_ago=730), condition("M48.062", onset_days_ago=120)],
     [card("fbss-imaging", "warning", ("72158",)), card("revision-referral", "info", ("3457005",)),
      card("neuro-deficit", "warning", ("3457005",))]),  # the neurological card keeps the warning (cards/stack.yaml)
    ("red-flag-cauda-equina", "Laminectomy 200 days ago; cauda equina syndrome 2 days ago: red flag only.",
     [procedure("63047", days_ago=200), condition("M54.16", onset_days_ago=100), condition("G83.4", onset_days_ago=2),
      condition("M46.1", onset_days_ago=300)],
     [card("red-flag", "critical", ("72158", "3457005"), ("72148",))]),
    ("red-flag-surgical-site-infection", "Laminotomy 20 days ago with surgical-site infection: red flag in the early "
     "window.",
     [procedure("63030", days_ago=20), condition("T81.41XA", onset_days_ago=4)],
     [card("red-flag", "critical", ("72158",))]),
    ("red-flag-foot-drop", "New foot drop 10 days ago with lumbar radiculopathy, no surgery: red flag.",
     [condition("M21.372", onset_days_ago=10), condition("M54.16", onset_days_ago=20)],
     [card("red-flag", "critical", ("72158",))]),
    ("red-flag-cervical-discitis", "ACDF 60 days ago; cervical discitis (SNOMED): red flag, cervical MRI.",
     [procedure("22551", days_ago=60), condition("302935008", system="sct", onset_days_ago=5),
      condition("M54.12", onset_days_ago=20)],
     [card("red-flag", "critical", ("72156",), ("72158",))]),
    ("chronic-low-back-pain", "Chronic low back pain (SNOMED) for 200 days after PT and naproxen; no surgery.",
     [condition("278860009", system="sct", onset_days_ago=200), procedure("97110", days_ago=100),
      medication_request("198014", start_days_ago=120, supply_days=60, status="completed")],
     [card("chronic-pain-specialist", "info", ("72148", "3457005"), ("72158",))]),
    ("acute-low-back-pain", "Low back pain for 30 days with ibuprofen: imaging not indicated yet, no card.",
     [condition("M54.50", onset_days_ago=30),
      medication_request("197807", start_days_ago=25, supply_days=20, status="completed")],
     []),
    ("chronic-pain-no-conservative-care", "Low back pain for 200 days, no conservative care documented: no card.",
     [condition("M54.50", onset_days_ago=200)],
     []),
    ("long-term-opioid-fbss", "Laminotomy 500 days ago, post-laminectomy syndrome, oxycodone for 150 days.",
     [procedure("63030", days_ago=500), condition("M96.1", onset_days_ago=300), condition("M54.16", onset_days_ago=300),
      medication_request("1049621", start_days_ago=150, supply_days=60, status="completed"),
      medication_request("1049621", start_days_ago=85, supply_days=90)],
     # Opioids are not a trial of conservative care (Errata 6, 9): no revision referral on their strength.
     [card("fbss-imaging", "warning", ("72158",)), card("opioid-long-term", "warning", ("3457005",))]),
    ("opioid-chain-broken", "Chronic low back pain; two hydrocodone courses separated by 31 days: not long-term.",
     [condition("M54.50", onset_days_ago=50),
      medication_request("857002", start_days_ago=150, supply_days=30, status="completed"),
      medication_request("857002", start_days_ago=89, supply_days=89)],
     []),
    ("deformity-scoliosis", "Lumbar scoliosis with new low back pain.",
     [condition("M41.26", onset_days_ago=3000), condition("M54.50", onset_days_ago=20)],
     [card("deformity", "info", ("72082",), ("72114",))]),
    ("cervical-myelopathy", "Cervical myelopathy with neck pain, no surgery: prompt specialist review and MRI.",
     [condition("202664003", system="sct", onset_days_ago=40), condition("M54.2", onset_days_ago=40)],
     [card("neuro-deficit", "warning", ("3457005", "72141"), ("72148", "72158"))]),
    ("scs-candidate", "Laminotomy 400 days ago, post-laminectomy syndrome, pain 7/10, post-op MRI 200 days ago.",
     [procedure("63030", days_ago=400), condition("M96.1", onset_days_ago=300), condition("M54.16", onset_days_ago=300),
      observation("72514-3", 7, "{score}", days_ago=5), imaging_report("72158", days_ago=200)],
     [card("fbss-imaging", "warning", ("72158",)), card("scs-consider", "info", ("3457005",))]),
    ("scs-already-implanted", "As the SCS candidate, with a spinal cord stimulator implanted: no SCS card.",
     [procedure("63030", days_ago=400), condition("M96.1", onset_days_ago=300), condition("M54.16", onset_days_ago=300),
      observation("72514-3", 7, "{score}", days_ago=5), imaging_report("72158", days_ago=200),
      procedure("63650", days_ago=150), procedure("63685", days_ago=150)],
     [card("fbss-imaging", "warning", ("72158",))]),
    ("icd9-post-laminectomy", "Legacy ICD-9 post-laminectomy syndrome (lumbar) and sciatica; surgery date unknown.",
     [condition("722.83", system="icd9", onset_days_ago=None, recordedDate=day(900)),
      condition("724.3", system="icd9", onset_days_ago=100)],
     [card("fbss-imaging", "warning", ("72158",))]),
    ("entered-in-error-records", "Spine surgery entered in error and a refuted radiculopathy: nothing to advise.",
     [procedure("63030", days_ago=200, status="entered-in-error"),
      condition("M54.16", onset_days_ago=60, verification="refuted"), condition("M54.50", onset_days_ago=None,
                                                                             verification="entered-in-error")],
     []),
    ("oid-coded-records", "Codes sent with HL7 OIDs instead of FHIR URIs (CPT and ICD-10-CM).",
     [procedure("63030", system="urn:oid:2.16.840.1.113883.6.12", days_ago=300),
      condition("M5416", system="urn:oid:2.16.840.1.113883.6.90", onset_days_ago=90)],
     [card("fbss-imaging", "warning", ("72158",))]),
    ("recent-mri-on-file", "FBSS with an MRI lumbar with and without contrast 20 days ago: MRI not suggested again.",
     [procedure("63030", days_ago=273), condition("M54.16", onset_days_ago=60), imaging_report("72158", days_ago=20)],
     [card("fbss-imaging", "warning", ("72114",), ("72158",))]),
    ("si-joint-mimic", "FBSS with sacroiliitis: consider the SI joint before revision.",
     [procedure("63030", days_ago=273), condition("M54.16", onset_days_ago=60), condition("M46.1", onset_days_ago=80)],
     [card("fbss-imaging", "warning", ("72158",)), card("alt-pain-generator", "info")]),
    ("recent-labs-override-codes", "FBSS; E11.65 on the list but HbA1c 7.2 % last month; nicotine dependence in "
     "remission; BMI 32; osteoporosis.",
     [procedure("63030", days_ago=273), condition("M54.16", onset_days_ago=60), condition("E11.65", onset_days_ago=900),
      observation("4548-4", 7.2, "%", days_ago=30), condition("F17.211", onset_days_ago=800),
      observation("39156-5", 32.0, "kg/m2", days_ago=40), condition("M81.0", onset_days_ago=500)],
     [card("fbss-imaging", "warning", ("72158",)), card("miss-risk", "warning", (), ("4548-4",))]),
    ("multiply-operated", "Two lumbar operations on different dates and persistent radiculopathy.",
     [procedure("63030", days_ago=1200), procedure("63042", days_ago=300), condition("M54.16", onset_days_ago=200)],
     [card("fbss-imaging", "warning", ("72158",)), card("miss-risk", "warning")]),
    ("opioid-statement-chronic-pain", "Chronic low back pain; tramadol taken for 120 days (MedicationStatement).",
     [condition("M54.50", onset_days_ago=300),
      {"resourceType": "MedicationStatement", "id": "ms-fixture", "status": "active",
       "medicationCodeableConcept": code("rxnorm", "835603", "tramadol hydrochloride 50 MG Oral Tablet"),
       "subject": {"reference": "Patient/pat-1"}, "effectivePeriod": {"start": day(120)}}],
     # Tramadol alone is no failed conservative care (Errata 6, 9): no chronic-pain work-up card on its strength.
     [card("opioid-long-term", "warning", ("3457005",))]),
]


def draft_imaging(value: str, ident: str, system: str = "cpt", **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "ServiceRequest", "id": ident, "status": "draft", "intent": "order",
                "priority": "routine", "code": code(system, value), "subject": {"reference": "Patient/pat-1"},
                "authoredOn": day(0)}
    resource.update(extra)
    return resource


def draft_medication(rxnorm: str | None, ident: str, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "MedicationRequest", "id": ident, "status": "draft",
                                "intent": "order", "subject": {"reference": "Patient/pat-1"}, "authoredOn": day(0)}
    if rxnorm:
        resource["medicationCodeableConcept"] = code("rxnorm", rxnorm)
    resource.update(extra)
    return resource


SPINE_SURGEON = {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "207XS0117X",
                             "display": "Orthopaedic Surgery of the Spine"}], "text": "Spine surgeon"}
LUMBAR_FBSS = [procedure("63030", days_ago=200), condition("M54.16", onset_days_ago=60)]
FBSS_DIAGNOSED = [procedure("63030", days_ago=300), condition("M96.1", onset_days_ago=200),
                  condition("M54.16", onset_days_ago=200)]

# (name, description, hook, chart, draft orders, selections (order-select), expected cards)
ORDER_FIXTURES: list[tuple[str, str, str, list[dict[str, Any]], list[dict[str, Any]], list[str],
                           list[dict[str, Any]]]] = [
    ("order-mri-without-contrast-after-surgery", "MRI lumbar without contrast selected for a patient 200 days after "
     "lumbar surgery with radiculopathy: replace with 72158 (O1).", "order-select",
     LUMBAR_FBSS, [draft_imaging("72148", "sr-mri")], ["ServiceRequest/sr-mri"],
     [card("imaging-protocol", "info", ("72158",), ("72148",))]),
    ("order-mri-early-post-op", "MRI lumbar without contrast 30 days after surgery: early window, no advice.",
     "order-select", [procedure("63030", days_ago=30), condition("M54.16", onset_days_ago=20)],
     [draft_imaging("72148", "sr-mri")], ["ServiceRequest/sr-mri"], []),
    ("order-early-imaging-not-indicated", "Lumbar MRI ordered for low back pain of 20 days, no red flags (O2).",
     "order-sign", [condition("M54.50", onset_days_ago=20)], [draft_imaging("72148", "sr-mri")], [],
     [card("imaging-not-indicated", "info")]),
    ("order-imaging-after-six-weeks", "Lumbar MRI ordered for low back pain of 50 days: not early, no advice.",
     "order-sign", [condition("M54.50", onset_days_ago=50)], [draft_imaging("72148", "sr-mri")], [], []),
    ("order-duplicate-imaging", "Lumbar MRI ordered; an MRI lumbar was done 60 days ago (O3).", "order-sign",
     [condition("M54.50", onset_days_ago=200), imaging_report("72148", days_ago=60)],
     [draft_imaging("72148", "sr-mri")], [], [card("imaging-duplicate", "info")]),
    ("order-imaging-old-study", "Lumbar MRI ordered; the last MRI was 200 days ago: not a duplicate, no advice.",
     "order-sign", [condition("M54.50", onset_days_ago=300), imaging_report("72148", days_ago=200)],
     [draft_imaging("72148", "sr-mri")], [], []),
    ("order-opioid-fbss", "Oxycodone selected for a patient with post-laminectomy syndrome (O4).", "order-select",
     FBSS_DIAGNOSED,
     [draft_medication("1049621", "mr-oxy")], ["MedicationRequest/mr-oxy"],
     [card("opioid-order", "warning", ("3457005",))]),
    ("order-opioid-early-post-op", "Oxycodone 20 days after a laminotomy, no prior opioids: expected, no advice.",
     "order-select", [procedure("63030", days_ago=20), condition("M54.16", onset_days_ago=60)],
     [draft_medication("1049621", "mr-oxy")], ["MedicationRequest/mr-oxy"], []),
    ("order-spine-surgery-with-risks", "Lumbar laminectomy ordered; HbA1c 9.1 %, current smoker (O5).", "order-sign",
     [condition("M48.061", onset_days_ago=400), observation("4548-4", 9.1, "%", days_ago=20),
      observation("72166-2", answer=("449868002", "Current every day smoker"), days_ago=60)],
     [draft_imaging("63047", "sr-surgery")], [], [card("miss-risk", "warning", ("4548-4", "3457005"))]),
    ("order-spine-referral-no-risks", "Referral to a spine surgeon for a patient without MISS risk factors: no advice.",
     "order-sign", [condition("M48.061", onset_days_ago=400), observation("4548-4", 6.1, "%", days_ago=20)],
     [draft_imaging("3457005", "sr-referral", system="sct", performerType=SPINE_SURGEON)], [], []),
    ("order-mixed-bundle", "An opioid, an MRI lumbar without contrast and an HbA1c order at once, after lumbar surgery "
     "with persistent radiculopathy.", "order-sign",
     LUMBAR_FBSS, [draft_medication("857002", "mr-hydrocodone"), draft_imaging("72148", "sr-mri"),
                   draft_imaging("4548-4", "sr-lab", system="loinc")], [],
     [card("imaging-protocol", "info", ("72158",)), card("opioid-order", "warning", ("3457005",))]),
    ("order-select-one-of-several", "MRI and oxycodone drafted; only the oxycodone is selected.", "order-select",
     FBSS_DIAGNOSED,
     [draft_imaging("72148", "sr-mri"), draft_medication("1049621", "mr-oxy")], ["MedicationRequest/mr-oxy"],
     [card("opioid-order", "warning", ("3457005",), ("72158",))]),
    ("order-red-flag", "MRI ordered for a patient with new cauda equina syndrome: red flag only.", "order-sign",
     [*LUMBAR_FBSS, condition("G83.4", onset_days_ago=1)], [draft_imaging("72148", "sr-mri")], [],
     [card("red-flag", "critical", ("72158",))]),
    ("order-sandbox-deviations", "Contained Medication reference (oxycodone) and reasonCode sent as one object, as the "
     "public CDS Hooks Sandbox does.", "order-sign", LUMBAR_FBSS,
     [draft_medication(None, "mr-contained", medicationReference={"reference": "#med1"},
                       contained=[{"resourceType": "Medication", "id": "med1", "code": code("rxnorm", "1049621")}]),
      draft_imaging("72148", "sr-mri", reasonCode=code("icd10", "M54.16"))], [],
     [card("imaging-protocol", "info", ("72158",)), card("opioid-order", "warning")]),
]


def _retarget(value: Any, patient_ref: str, prefix: str) -> Any:
    """Point every subject at the fixture's patient and make ids unique across fixtures."""
    if isinstance(value, dict):
        out = {k: _retarget(v, patient_ref, prefix) for k, v in value.items()}
        if prefix and "resourceType" in out and isinstance(out.get("id"), str):
            out["id"] = f"{prefix}-{out['id']}"
        for field in ("subject", "patient"):
            if isinstance(out.get(field), dict) and out[field].get("reference", "").startswith("Patient/"):
                out[field] = {"reference": patient_ref}
        return out
    if isinstance(value, list):
        return [_retarget(v, patient_ref, prefix) for v in value]
    return value


def _patient(index: int) -> dict[str, Any]:
    """A synthetic Patient: invented name, MRN and birth date (never shown in a card; the tests check that)."""
    return {
        "resourceType": "Patient", "id": f"fx{index:02d}",
        "identifier": [{"system": "urn:spine-cds:synthetic-mrn", "value": f"MRN-SYN-{9100 + index}"}],
        "name": [{"family": f"Synthetic{index:02d}", "given": [NAMES[(index - 1) % len(NAMES)]]}],
        "gender": ["female", "male"][index % 2],
        "birthDate": f"{1950 + index % 40}-0{1 + index % 9}-1{index % 9}",
    }


def _write(index: int, name: str, resources: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    slug = f"{index:02d}-{name}"
    patient = _patient(index)
    chart = [patient, *(_retarget(r, f"Patient/{patient['id']}", patient["id"]) for r in (*resources, *noise(index)))]
    bundle = {"resourceType": "Bundle", "id": slug, "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{slug}-{i}", "resource": r} for i, r in enumerate(chart)]}
    (OUT / f"{slug}.json").write_text(json.dumps(bundle, indent=1) + "\n")
    expected = {"description": expected.pop("description"), "anchor": ANCHOR, "patientId": patient["id"], **expected}
    (OUT / f"{slug}.expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for index, (name, description, resources, expected) in enumerate(FIXTURES, start=1):
        _write(index, name, resources, {"description": description, "hook": "patient-view", "cards": expected})
    for index, (name, description, hook, resources, drafts, selections, expected) in enumerate(
            ORDER_FIXTURES, start=len(FIXTURES) + 1):
        patient_ref = f"Patient/fx{index:02d}"
        context: dict[str, Any] = {"draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": _retarget(d, patient_ref, "")} for d in drafts]}}  # draft ids as written: selections name them
        if hook == "order-select":
            context["selections"] = selections
        _write(index, name, resources, {"description": description, "hook": hook, "context": context,
                                        "cards": expected})
    print(f"{len(FIXTURES) + len(ORDER_FIXTURES)} fixtures written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
