"""The card catalogue: templates, orders and override reasons read from cards/ once, at start-up."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import yaml
from jinja2 import DictLoader, Environment, StrictUndefined, Template, meta
from jinja2.sandbox import SandboxedEnvironment

from cds_service.jsonio import compact
from cds_service.terminology.valuesets import value_set

CARD_TYPE_SYSTEM = "urn:spine-cds:card-type"
OVERRIDE_REASON_SYSTEM = "urn:spine-cds:override-reason"
_PACKAGE = "cds_service.card_templates"
_TEMPLATE_FIELDS = frozenset({"type", "indicator", "summary", "detail", "source", "links", "regions", "suggestions",
                              "overrideReasons", "rule"})
_REQUIRED_FIELDS = ("type", "indicator", "summary", "detail", "source", "overrideReasons")
_NOT_CARDS = frozenset({"orders.yaml", "links.yaml", "stack.yaml"})
REGIONS = ("lumbar", "thoracic", "cervical")
# What clinician-facing text must never hold: the project's own documents and identifiers (source pages, value-set
# and rule ids, section signs). A clinician can look up a guideline, not these.
INTERNAL_TAG = re.compile(r"\bseeds?\b|\bVS-\w+|clinical-rules|§|\b[ROF]\d{1,2}\b(?!\.\d)", re.IGNORECASE)


def short(text: Any, length: int) -> str:
    """Shorten text to `length` characters (with an ellipsis) so summaries stay under 140 characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


@dataclass(frozen=True)
class Citation:
    """What a card cites: `source` (label and url) and `links`, as the card carries them."""

    source: Mapping[str, Any]
    links: tuple[Mapping[str, str], ...]


@dataclass(frozen=True)
class CardTemplate:
    type: str
    indicator: str
    summary: Template
    detail: Template
    citations: Mapping[str, Citation]  # by region ("" for a card without one, or a region with no text of its own)
    suggestion_descriptions: Mapping[str, str]
    override_reasons: tuple[Mapping[str, str], ...]
    extra: Mapping[str, Any]
    variables: frozenset[str]  # the names the summary and detail (and their partials) read

    def citation(self, region: str | None) -> Citation:
        return self.citations.get(region or "", self.citations[""])


@dataclass(frozen=True)
class Catalogue:
    cards: Mapping[str, CardTemplate]
    orders: Mapping[str, Mapping[str, Any]]
    actions: Mapping[str, Mapping[str, Any]]
    studies: Mapping[str, Mapping[str, Any]]
    unavailable_labels: Mapping[str, str]
    app_link_label: str = ""
    max_warnings: int = 2
    warning_priority: tuple[str, ...] = ()


def _read(name: str) -> bytes:
    return resources.files(_PACKAGE).joinpath(name).read_bytes()


@cache
def declared_override_reasons() -> Mapping[str, str]:
    """The override reasons the cards offer (cards/override-reasons.json): code -> display, in OVERRIDE_REASON_SYSTEM.
    The feedback report labels what clients send back with these."""
    system = orjson.loads(_read("override-reasons.json"))
    return MappingProxyType({c["code"]: c["display"] for c in system["concept"]})


def _study_codings() -> dict[str, list[dict[str, str]]]:
    """For each imaging study key of VS-IMG: its CPT coding and its LOINC coding (the first of each listed)."""
    codings: dict[str, dict[str, dict[str, str]]] = {}
    for member in value_set("VS-IMG").members:
        study = member.first("study")
        if study and member.system in ("cpt", "loinc"):
            codings.setdefault(study, {}).setdefault(member.system, {
                "system": member.system_uri, "code": member.code, "display": member.display})
    return {study: [by_system[s] for s in ("cpt", "loinc") if s in by_system] for study, by_system in codings.items()}


class CardTemplateEnvironment(SandboxedEnvironment):
    """The sandbox card templates render in, with each template's globals one plain dict.

    Jinja gives every template a ChainMap over the environment's globals, so that globals changed later still show;
    every render then lists that ChainMap's keys in Python, about half of building a context (bench/DECISIONS.md).
    Nothing here changes globals once the catalogue is loaded, which is when Jinja asks for it too.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


def template_variables(environment: Environment, *sources: str) -> frozenset[str]:
    """The variables the template sources read, those of the partials they include counted in (Jinja's own
    analysis). The renderer builds only these for a card: most templates cite a few of the lists it could build."""
    names: set[str] = set()
    pending, included = list(sources), set()
    while pending:
        tree = environment.parse(pending.pop())
        names |= meta.find_undeclared_variables(tree)
        for name in meta.find_referenced_templates(tree):
            if name is None:
                raise ValueError("card templates must include partials by a literal name")
            if name not in included:
                included.add(name)
                pending.append(environment.loader.get_source(environment, name)[0])
    return frozenset(names)


def _card_files(overlay: Path | None) -> dict[str, bytes]:
    """The card files by name: the project's, each replaced (or joined) by a file of the same name in `overlay` (a
    silent knowledge version's cards, cds_service/silent.py)."""
    files = {entry.name: entry.read_bytes() for entry in resources.files(_PACKAGE).iterdir()
             if entry.name.endswith((".yaml", ".json"))}
    if overlay is not None and overlay.is_dir():
        files.update({path.name: path.read_bytes() for path in overlay.iterdir() if path.suffix in (".yaml", ".json")})
    return files


@cache
def load_catalogue(overlay: Path | None = None) -> Catalogue:
    """Parse every card template (failing loudly at start-up on a template error, never on a request). `overlay`: a
    folder whose files replace the project's of the same name (a silent knowledge version)."""
    files = _card_files(overlay)
    partials = yaml.safe_load(files["_partials.yaml"])
    environment = CardTemplateEnvironment(
        loader=DictLoader({"unavailable": partials["unavailable"]}), undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )
    environment.filters["short"] = short
    environment.filters["label"] = lambda value, labels: labels.get(value, value)  # keys the rules emit -> words
    for partial in environment.list_templates():
        environment.get_template(partial)  # compiled now and kept in the environment's cache, not on a first include
    reasons = declared_override_reasons()
    links = yaml.safe_load(files["links.yaml"])
    cards = {}
    for name, content in sorted(files.items()):
        if not name.endswith(".yaml") or name.startswith("_") or name in _NOT_CARDS:
            continue
        raw = yaml.safe_load(content)
        missing = [key for key in _REQUIRED_FIELDS if not isinstance(raw, dict) or key not in raw]
        if missing:
            raise ValueError(f"cards/{name}: missing {', '.join(missing)}")
        unknown = [code for code in raw["overrideReasons"] if code not in reasons]
        if unknown:
            raise ValueError(f"cards/{name}: unknown override reasons {unknown}")
        tagged = internal_tags(raw)
        if tagged:
            raise ValueError(f"cards/{name}: clinician text cites internal documents or ids: {tagged}")
        cards[raw["type"]] = CardTemplate(
            type=raw["type"],
            indicator=raw["indicator"],
            summary=environment.from_string(raw["summary"]),
            detail=environment.from_string(raw["detail"]),
            citations=MappingProxyType(_citations(raw, links, name)),
            suggestion_descriptions=MappingProxyType(raw.get("suggestions") or {}),
            override_reasons=tuple({"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": reasons[code]}
                                   for code in raw["overrideReasons"]),
            extra=MappingProxyType({k: v for k, v in raw.items() if k not in _TEMPLATE_FIELDS}),
            variables=template_variables(environment, raw["summary"], raw["detail"]),
        )
    orders = yaml.safe_load(files["orders.yaml"])
    studies = _study_codings()
    for key, study in orders["studies"].items():
        if key not in studies:
            raise ValueError(f"cards/orders.yaml: study {key} has no codes in VS-IMG")
        study["coding"] = studies[key]
    stack = yaml.safe_load(files["stack.yaml"])
    unranked = [t for t, card in cards.items() if card.indicator == "warning" and t not in stack["warning_priority"]]
    if unranked:
        raise ValueError(f"cards/stack.yaml: warning cards missing from warning_priority: {unranked}")
    return Catalogue(
        max_warnings=int(stack["max_warnings"]),
        warning_priority=tuple(stack["warning_priority"]),
        cards=MappingProxyType(cards),
        orders=MappingProxyType(compact(orders["orders"])),
        actions=MappingProxyType(compact(orders["actions"])),
        studies=MappingProxyType(compact(orders["studies"])),
        unavailable_labels=MappingProxyType(partials["unavailable_labels"]),
        app_link_label=str(partials["app_link_label"]),
    )


def _citation(source: Mapping[str, Any], link_ids: list[str], links: Mapping[str, Any], where: str) -> Citation:
    unknown = [i for i in [source.get("link"), *link_ids] if i not in links]
    if unknown:
        raise ValueError(f"{where}: links {unknown} are not in cards/links.yaml")
    return Citation(
        source=MappingProxyType(compact({"label": source["label"], "url": links[source["link"]]["url"]})),
        links=tuple(compact({"label": links[i]["label"], "url": links[i]["url"]}) for i in link_ids))


def _citations(raw: Mapping[str, Any], links: Mapping[str, Any], name: str) -> dict[str, Citation]:
    """The card's citation, and for each region that has its own (`regions:`) that one: a cervical card cites the
    cervical ACR topic, never the low back pain one."""
    citations = {"": _citation(raw["source"], list(raw.get("links") or ()), links, f"cards/{name}")}
    for region, own in (raw.get("regions") or {}).items():
        if region not in REGIONS:
            raise ValueError(f"cards/{name}: unknown region {region!r}")
        citations[region] = _citation(own.get("source", raw["source"]), list(own.get("links", raw.get("links", ()))),
                                      links, f"cards/{name} ({region})")
    return citations


def internal_tags(raw: Mapping[str, Any]) -> list[str]:
    """Internal tags (INTERNAL_TAG) in a template's clinician-facing text: summary, detail, source label, suggestion
    descriptions and the template's own label maps."""
    texts = [raw["summary"], raw["detail"], raw["source"]["label"], *(raw.get("suggestions") or {}).values()]
    texts += [own["source"]["label"] for own in (raw.get("regions") or {}).values() if "source" in own]
    texts += [v for key, value in raw.items() if key not in _TEMPLATE_FIELDS and isinstance(value, dict)
              for v in value.values() if isinstance(v, str)]
    return sorted({match.group(0) for text in texts for match in INTERNAL_TAG.finditer(text)})


def check_card_types(catalogue: Catalogue, produced: Iterable[str]) -> None:
    """Every card type a rule can produce has a template, and every template is one a rule produces: a rule's card
    without a template would fail every call that fires it, a template no rule produces is text nobody reviews for
    nothing. Checked at start-up (create_app)."""
    produced = set(produced)
    without_template = sorted(produced - set(catalogue.cards))
    without_rule = sorted(set(catalogue.cards) - produced)
    if without_template or without_rule:
        raise ValueError("card types out of step between the rules and cards/: "
                         + "; ".join(part for part in (
                             f"no template for {', '.join(without_template)}" if without_template else "",
                             f"no rule produces {', '.join(without_rule)}" if without_rule else "") if part))


class FindingDetails(dict):
    """A finding's details as card templates read them (`d.region`): a missing key reads as None instead of failing
    the card. Here, not in cards.py: that module is compiled (setup.py), and a compiled class cannot define
    `__getattr__`."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)
