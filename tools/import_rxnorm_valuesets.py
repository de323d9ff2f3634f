"""Authoring tool (not used at run time or in tests): build VS-19 and VS-20 from the public RxNorm value sets.

Reads the copies of cqframework/cds4cpm value sets kept in the project's shared reference folder and writes
`cds_service/terminology/valuesets/VS-19.json` and `VS-20.json`. VS-19 excludes antitussive (cough and cold)
combination products, listed under `compose.exclude` so reviewers see them. Run from the repository root:

    python tools/import_rxnorm_valuesets.py ../shared/reference/valuesets
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
EXT = "urn:spine-cds:fhir:attribute:"
UNVERIFIED = {"url": EXT + "verification", "valueCode": "unverified"}
# Co-ingredients that make an opioid product a cough/cold (antitussive) product, not an analgesic.
ANTITUSSIVE = re.compile(
    r"(?i)guaifenesin|pseudoephedrine|phenylephrine|chlorpheniramine|brompheniramine|dexbrompheniramine|"
    r"triprolidine|pyrilamine|promethazine|homatropine|chlorcyclizine|carbinoxamine|diphenhydramine|"
    r"bromodiphenhydramine|dexchlorpheniramine|potassium iodide|benzonatate"
)
OPIOID_INGREDIENTS = [
    ("7804", "oxycodone"), ("5489", "hydrocodone"), ("7052", "morphine"), ("3423", "hydromorphone"),
    ("4337", "fentanyl"), ("10689", "tramadol"), ("787390", "tapentadol"), ("6813", "methadone"),
    ("2670", "codeine"), ("7814", "oxymorphone"), ("1819", "buprenorphine"), ("6754", "meperidine"),
    ("1841", "butorphanol"), ("8001", "pentazocine"), ("23088", "dihydrocodeine"), ("7676", "opium"),
    ("6378", "levorphanol"),
]
NON_OPIOID_INGREDIENTS = [
    ("25480", "gabapentin"), ("187832", "pregabalin"), ("7258", "naproxen"), ("5640", "ibuprofen"),
    ("41493", "meloxicam"), ("21949", "cyclobenzaprine"), ("72625", "duloxetine"), ("161", "acetaminophen"),
    ("140587", "celecoxib"), ("3355", "diclofenac"),
]


# VS-20 is curated to analgesics at analgesic dose (the clinical specification's Errata 6, a clinical review of
# 2026-12): the VSAC list also holds cough and cold products, antiepileptics, antiemetics, hypnotics, diuretics,
# counter-irritants and low-dose aspirin, and 42 days of any of them counted as "conservative care tried". A product is
# kept only when every ingredient is one of these (NSAIDs, acetaminophen, gabapentinoids, duloxetine and tricyclics,
# muscle relaxants, topical lidocaine), it is not an injection or an eye/ear product (a one-off injection is not a
# course of medication), and any aspirin in it is above 162 mg.
ANALGESIC_INGREDIENTS = re.compile(
    r"(?i)^(ibuprofen|naproxen( sodium)?|meloxicam|celecoxib|diclofenac( sodium| potassium| epolamine)?|etodolac|"
    r"indomethacin|ketoprofen|ketorolac( tromethamine)?|nabumetone|oxaprozin|piroxicam|sulindac|flurbiprofen|"
    r"fenoprofen|diflunisal|mefenamic acid|meclofenamate|tolmetin|salsalate|felbinac|aspirin|acetaminophen|"
    r"gabapentin( enacarbil)?|pregabalin|duloxetine|amitriptyline( hydrochloride)?|nortriptyline|"
    r"desipramine( hydrochloride)?|"
    r"imipramine( hydrochloride| pamoate)?|cyclobenzaprine( hydrochloride)?|methocarbamol|tizanidine|baclofen|"
    r"carisoprodol|metaxalone|orphenadrine( citrate| hydrochloride)?|chlorzoxazone|lidocaine( hydrochloride)?)$")
EXCLUDED_FORMS = re.compile(r"(?i)injection|injectable|syringe|cartridge|ophthalmic|otic|irrigation|mouthwash|\bpack\b")
LIDOCAINE_TOPICAL = re.compile(r"(?i)patch|topical|cream|ointment|gel|lotion")
ASPIRIN_DOSE = re.compile(r"(?i)\baspirin (\d+(?:\.\d+)?) MG\b")
ASPIRIN_ANALGESIC_MIN_MG = 162


def _ingredients(display: str) -> list[str]:
    """The ingredient names of a clinical-drug display ("acetaminophen 325 MG / oxycodone ... Oral Tablet")."""
    text = re.sub(r"^(\d+ (HR|DAY|ACTUAT|ML) )+", "", display.strip(), flags=re.IGNORECASE)
    names = []
    for part in text.split(" / "):
        words = []
        for word in part.split():
            if word[0].isdigit():
                break
            words.append(word)
        names.append(" ".join(words).strip().lower())
    return names


def is_analgesic_product(display: str) -> bool:
    """Whether a non-opioid product counts as an analgesic course (see ANALGESIC_INGREDIENTS)."""
    if EXCLUDED_FORMS.search(display):
        return False
    names = _ingredients(display)
    if not names or not all(ANALGESIC_INGREDIENTS.match(name) for name in names):
        return False
    if any(name.startswith("lidocaine") for name in names) and not LIDOCAINE_TOPICAL.search(display):
        return False
    doses = [float(mg) for mg in ASPIRIN_DOSE.findall(display)]
    return not any(mg <= ASPIRIN_ANALGESIC_MIN_MG for mg in doses)


def _concepts(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    included = [c for include in data.get("compose", {}).get("include", []) for c in include.get("concept", [])]
    return included or data["expansion"]["contains"]


def _attr(name: str, value: str) -> dict:
    return {"url": EXT + name, "valueCode": value}


def _ingredient_concepts(rows, subset_note: str, unverified: bool) -> list[dict]:
    out = []
    for code, name in rows:
        extension = [_attr("subset", "ingredient"), _attr("ingredient", name)]
        if unverified:
            extension.append(UNVERIFIED)
        out.append({"extension": extension, "code": code, "display": name})
    return out


def build_opioids(reference: Path) -> dict:
    products, excluded = [], []
    names = [name for _, name in OPIOID_INGREDIENTS]
    for concept in sorted(_concepts(reference / "cds4cpm-opioids.json"), key=lambda c: int(c["code"])):
        display = concept["display"]
        if ANTITUSSIVE.search(display):
            excluded.append({"code": concept["code"], "display": display})
            continue
        extension = [_attr("subset", "product")]
        # Whole words: "\bcodeine\b" does not match inside "dihydrocodeine".
        extension += [_attr("ingredient", n) for n in names if re.search(rf"(?i)\b{n}\b", display)]
        if re.search(r"(?i)buprenorphine", display) and re.search(r"(?i)naloxone|sublingual", display):
            extension.append(_attr("subset", "oud-treatment"))
        products.append({"extension": extension, "code": concept["code"], "display": display})
    conditions = [
        ("http://hl7.org/fhir/sid/icd-10-cm", "Z79.891", "Long term (current) use of opiate analgesic",
         ["long-term-use"], False),
        ("http://hl7.org/fhir/sid/icd-10-cm", "F11.1", "Opioid abuse", ["opioid-use-disorder"], True),
        ("http://hl7.org/fhir/sid/icd-10-cm", "F11.2", "Opioid dependence", ["opioid-use-disorder"], True),
        ("http://snomed.info/sct", "75544000", "Opioid dependence", ["opioid-use-disorder"], False),
        ("http://snomed.info/sct", "5602001", "Opioid abuse", ["opioid-use-disorder"], False),
    ]
    condition_includes: dict[str, list] = {}
    for system, code, display, subsets, prefix in conditions:
        extension = [_attr("subset", "condition")] + [_attr("subset", s) for s in subsets]
        if prefix:
            extension.append({"url": EXT + "match", "valueCode": "prefix"})
        condition_includes.setdefault(system, []).append({"extension": extension, "code": code, "display": display})
    return {
        "resourceType": "ValueSet",
        "id": "VS-19",
        "extension": [{"url": "urn:spine-cds:fhir:provenance", "valueString": (
            "RxNorm clinical-drug codes: cqframework/cds4cpm @ e73c2d2953aaad08f09428a6e70d5a07c5c7db31 "
            "input/vocabulary/valueset/valueset-opioids.json (VSAC 'Opioid analgesics'), "
            f"{len(products)} kept, {len(excluded)} antitussive cough/cold combinations excluded (compose.exclude; "
            "co-ingredient rule in tools/import_rxnorm_valuesets.py). Ingredient RxCUIs: CDC MME conversion code "
            "system in cqframework/cds4cpm. Conditions: ICD-10-CM / SNOMED CT per clinical-rules section 5.13.")}],
        "url": "urn:spine-cds:valueset:VS-19",
        "name": "Opioids",
        "title": "VS-19 Opioids (RxNorm products and ingredients; opioid-related conditions)",
        "status": "active",
        "description": (
            "Opioid analgesics as orders and medication records carry them: clinical-drug codes (SCD/SBD, subset "
            "'product'), ingredient codes (subset 'ingredient'; their names are the text fallback when a medication "
            "has no code), and the conditions Z79.891 long-term opiate use and opioid use disorder. Used for "
            "long-term opioid therapy (F8, R7), analgesic exposure (F7) and opioid orders (O4). Buprenorphine "
            "with naloxone or sublingual buprenorphine is marked 'oud-treatment': it counts as opioid exposure, "
            "and the card mentions the opioid-use-disorder context."),
        "compose": {
            "include": [
                {"system": RXNORM, "concept": products + _ingredient_concepts(OPIOID_INGREDIENTS, "", False)},
                *[{"system": s, "concept": c} for s, c in condition_includes.items()],
            ],
            "exclude": [{"system": RXNORM, "concept": excluded}],
        },
    }


def build_non_opioids(reference: Path) -> dict:
    path = reference / "vsac-2.16.840.1.113762.1.4.1021.73-nonopioid-pain-medications.json"
    products, excluded = [], []
    for concept in sorted(_concepts(path), key=lambda c: int(c["code"])):
        if is_analgesic_product(concept["display"]):
            products.append({"extension": [_attr("subset", "product")], "code": concept["code"],
                             "display": concept["display"]})
        else:
            excluded.append({"code": concept["code"], "display": concept["display"]})
    return {
        "resourceType": "ValueSet",
        "id": "VS-20",
        "extension": [{"url": "urn:spine-cds:fhir:provenance", "valueString": (
            "RxNorm codes: VSAC 2.16.840.1.113762.1.4.1021.73 'Non-opioid pain medications' (expansion 20201113, "
            f"RxNorm 2020-12) via cqframework/cds4cpm: {len(products)} kept, {len(excluded)} excluded "
            "(compose.exclude) by the curation of the clinical specification's Errata 6: analgesics at analgesic "
            "dose only (NSAIDs, acetaminophen, gabapentinoids, duloxetine and tricyclics, muscle relaxants, "
            "topical lidocaine; no injections, eye or ear products, packs, or aspirin of 162 mg or less; rule in "
            "tools/import_rxnorm_valuesets.py). Ingredient RxCUIs from clinical-rules section 5.14, marked unverified "
            "there.")}],
        "url": "urn:spine-cds:valueset:VS-20",
        "name": "NonOpioidAnalgesics",
        "title": "VS-20 Non-opioid analgesics (RxNorm)",
        "status": "active",
        "description": (
            "Non-opioid analgesics at analgesic dose (NSAIDs, acetaminophen, gabapentinoids, duloxetine and "
            "tricyclics, muscle relaxants, topical lidocaine): exposure of at least 42 days within the look-back (and "
            "from 42 days after a spine surgery) counts as conservative care already tried (F7). The other products "
            "of the VSAC list (cough and cold products, antiepileptics, antiemetics, hypnotics, low-dose aspirin...) "
            "are listed under compose.exclude so reviewers see them."),
        "compose": {"include": [{"system": RXNORM, "concept": products + _ingredient_concepts(
            NON_OPIOID_INGREDIENTS, "", True)}], "exclude": [{"system": RXNORM, "concept": excluded}]},
    }


def main(reference: str) -> None:
    out = Path(__file__).resolve().parent.parent / "cds_service" / "terminology" / "valuesets"
    for name, builder in (("VS-19", build_opioids), ("VS-20", build_non_opioids)):
        (out / f"{name}.json").write_text(json.dumps(builder(Path(reference)), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/valuesets")
