"""Findings to CDS Hooks 2.0 cards, from the templates in cards/ (CDS Hooks 2.0, 'CDS Service Response').

Every card gets a fresh uuid, an indicator from the catalogue, a summary under 140 characters, a markdown detail that
cites its evidence with dates, `source.topic` naming its card type, links to the guideline, override reasons, and its
suggestions with `selectionBehavior`. Nothing here decides anything clinical.

Cards carry no empty values (CDS Hooks G2) by construction: the catalogue's data is compacted when loaded, and every
field rendered here (suggestions included) is filled or left out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from jinja2 import Template

from cds_service.clinical.model import Evidence, Finding
from cds_service.ids import time_ordered_uuid
from cds_service.render.app_link import AppLink
from cds_service.render.catalogue import (
    CARD_TYPE_SYSTEM,
    CardTemplate,
    Catalogue,
    FindingDetails,
    load_catalogue,
    short,
)
from cds_service.render.citation import cite, md
from cds_service.render.suggestions import invalid_orders, reason_codes, render_suggestion

log = logging.getLogger("cds_service.render")
SUMMARY_MAX = 139
_BLANK_LINES = re.compile(r"\n{3,}")
_DIAGNOSES = ("icd10cm", "icd9cm", "snomed")
CONTEXT_NAMES = frozenset({"region", "d", "unavailable", "t", "surgery", "evidence", "findings", "care", "omitted",
                           "risks", "risk_names", "orders"})
"""The names a card template can read (what `CardRenderer._context` builds)."""


class RenderedCard(dict):
    """A card built by the renderer, free of empty values by construction (so the response builder need not walk
    it again); a card from anywhere else is compacted before it is sent."""


class CardRenderer:
    """Renders findings with the catalogue loaded once at start-up."""

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self.catalogue = catalogue or load_catalogue()
        for card_type, template in self.catalogue.cards.items():
            # A name the renderer does not build would fail every card of that type: refuse it at start-up.
            unknown = template.variables - CONTEXT_NAMES - set(template.summary.environment.globals)
            if unknown:
                raise ValueError(f"cards/{card_type}: the template reads {sorted(unknown)}, which no card provides "
                                 f"(known: {', '.join(sorted(CONTEXT_NAMES))})")
        invalid = invalid_orders(self.catalogue)
        if invalid:
            raise ValueError(f"cards/orders.yaml: not a valid FHIR R4 ServiceRequest: {', '.join(invalid)}")

    def render(self, findings: Iterable[Finding], *, now: datetime, patient_id: str,
               unavailable: Iterable[str] = (), app_link: AppLink | None = None) -> list[dict[str, Any]]:
        """Cards for the findings (in their order). `unavailable` names prefetch keys that could not be had;
        `app_link` how each card links to the evidence app (none without it)."""
        missing = [self.catalogue.unavailable_labels.get(key, key) for key in sorted(set(unavailable))]
        cards = []
        for finding in findings:
            card = self.card(finding, now=now, patient_id=patient_id, unavailable=missing)
            if app_link is not None:
                link = app_link.link(card["uuid"], finding.card_type, [ev.reference for ev in finding.evidence])
                if link is not None:
                    card.setdefault("links", []).append(link)
            cards.append(card)
        self._limit_warnings(cards)
        return cards

    def _limit_warnings(self, cards: list[dict[str, Any]]) -> None:
        """At most `max_warnings` warning cards (cards/stack.yaml): those lower in `warning_priority` become info."""
        warnings = [card for card in cards if card["indicator"] == "warning"]
        if len(warnings) <= self.catalogue.max_warnings:
            return
        rank = {card_type: index for index, card_type in enumerate(self.catalogue.warning_priority)}
        warnings.sort(key=lambda card: rank.get(card["source"]["topic"]["code"], len(rank)))
        for card in warnings[self.catalogue.max_warnings:]:
            card["indicator"] = "info"

    def card(self, finding: Finding, *, now: datetime, patient_id: str, unavailable: list[str]) -> dict[str, Any]:
        template = self.catalogue.cards[finding.card_type]
        context = self._context(finding, now, unavailable, template)
        summary = " ".join(_render(template.summary, context).split())
        if len(summary) > SUMMARY_MAX:
            log.warning("summary shortened", extra={"card_type": finding.card_type, "length": len(summary)})
            summary = short(summary, SUMMARY_MAX)
        detail = _BLANK_LINES.sub("\n\n", _render(template.detail, context)).strip()
        reasons = reason_codes(finding.evidence)
        citation = template.citation(finding.region)
        suggestions = [s for s in (render_suggestion(item, self.catalogue, template.suggestion_descriptions,
                                                     patient_id, reasons) for item in finding.suggestions) if s]
        card = RenderedCard({
            "uuid": time_ordered_uuid(),
            "summary": summary,
            "indicator": template.indicator,
            "source": {**citation.source, "topic": {"system": CARD_TYPE_SYSTEM, "code": finding.card_type}},
            "overrideReasons": list(template.override_reasons),
            "links": [{"label": link["label"], "url": link["url"], "type": "absolute"} for link in citation.links],
        })
        if detail:
            card["detail"] = detail
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = "any"
        return card

    @staticmethod
    def _context(finding: Finding, now: datetime, unavailable: list[str], template: CardTemplate) -> dict[str, Any]:
        """What the card's template reads, and only that (`template.variables`): citing every list for every card
        cited most evidence two or three times over, for lists the template never shows."""
        uses = template.variables
        details = FindingDetails(finding.details)
        extra = template.extra
        context: dict[str, Any] = {"region": finding.region or "spine", "d": details, "unavailable": unavailable,
                                   "t": extra}  # `t`: the template's own data (e.g. cause_labels)
        surgery = next((ev for ev in finding.evidence if ev.what == "spine surgery"), None)
        if "surgery" in uses:
            context["surgery"] = cite(surgery, now) if surgery else _surgery_from_diagnosis(finding.evidence, now)
        if "evidence" in uses:
            context["evidence"] = [cite(ev, now) for ev in finding.evidence]
        care = details.get("conservative_care", ())
        if "findings" in uses:
            context["findings"] = [cite(ev, now) for ev in finding.evidence if ev is not surgery and ev not in care]
        if "care" in uses:
            context["care"] = [cite(ev, now) for ev in care]
        if "omitted" in uses:
            context["omitted"] = [cite(ev, now) for ev in finding.omitted]
        if "risks" in uses or "risk_names" in uses:
            labels = extra.get("risk_labels", {})
            risks = [(labels.get(name, name), [cite(ev, now) for ev in evs])
                     for name, evs in details.get("risk_evidence", ())]
            context["risks"] = risks
            context["risk_names"] = [labels.get(name, name).split(" —")[0].lower() for name, _ in risks]
        if "orders" in uses:
            context["orders"] = [md(order) for order in details.get("orders", ())]
        return context


def _render(template: Template, context: dict[str, Any]) -> str:
    """`template.render(context)` without Jinja's per-call copy of the environment's globals into a new context
    (a shared context, Jinja's own option): card templates use only their variables, filters and the partials."""
    return "".join(template.root_render_func(template.new_context(context, shared=True)))


def _surgery_from_diagnosis(evidence: Iterable[Evidence], now: datetime) -> str:
    """When the surgery is known only from a diagnosis (F1b), cite that diagnosis."""
    first = next(iter(evidence), None)
    return cite(first, now) if first is not None and first.system in _DIAGNOSES else "not recorded"
