"""Per-site options: what one EHR site (a trusted issuer, or one of its tenants) is answered with.

Sites differ in what they want interrupting their clinicians: one enables only the imaging cards, another shows
warnings and red flags but not information cards, a third allows links only to its own intranet and the guideline
publishers it trusts. These are set per issuer, and per tenant, in the trusted-issuers file (CDS_TRUSTED_ISSUERS):

    {"iss": "https://ehr.example.org", ...,
     "site_options": {"*": {"minimum_indicator": "warning"},
                      "hospital-a": {"card_types": ["red-flag", "imaging-protocol"],
                                     "link_allowlist": ["https://www.acr.org/"]}}}

`card_types` lists the card types answered (a declared type each); `minimum_indicator` drops cards below it (info <
warning < critical); `link_allowlist` lists URL prefixes a card's links may point to (other links are removed from the
card, the card stays; the link to the service's own evidence app is always kept); `app_link` says how cards link to
that app for this site's EHR (`smart`, `absolute` or `none`: CDS_APP_LINK otherwise). A tenant's entry replaces the
issuer's `*` entry as a whole.

Red flags can never be turned off (the card types card-types.json declares `always-answered`): a `card_types` list
without them is refused when the file is read, and their cards pass the indicator floor whatever it is. An urgent
finding must reach the clinician at every site.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.clinical.knowledge import always_answered_card_types
from cds_service.render.app_link import APP_LINK_MODES

INDICATORS = ("info", "warning", "critical")
ANY_TENANT = "*"


@dataclass(frozen=True)
class SiteOptions:
    """What one site is answered with; None for an option means the service's default (everything)."""

    card_types: frozenset[str] | None = None
    minimum_indicator: str | None = None
    link_allowlist: tuple[str, ...] | None = None
    app_link: str | None = None

    def apply(self, cards: list[dict[str, Any]], own_links: str = "\x00") -> list[dict[str, Any]]:
        """The cards this site is answered with: types enabled, at or above the indicator floor (red flags always),
        links only to allowed prefixes or to the service's own app (`own_links`, its URL prefix)."""
        floor = INDICATORS.index(self.minimum_indicator) if self.minimum_indicator else 0
        always = always_answered_card_types()
        kept = []
        for card in cards:
            card_type = card["source"]["topic"]["code"]
            if card_type not in always:
                if self.card_types is not None and card_type not in self.card_types:
                    continue
                if INDICATORS.index(card["indicator"]) < floor:
                    continue
            if self.link_allowlist is not None and card.get("links"):
                allowed = (*self.link_allowlist, own_links)
                links = [link for link in card["links"] if link["url"].startswith(allowed)]
                if len(links) < len(card["links"]):
                    card = {key: value for key, value in card.items() if key != "links"}  # noqa: PLW2901 (the copy)
                    if links:
                        card["links"] = links
            kept.append(card)
        return kept


def parse_site_options(entry: Any, iss: str, declared: Iterable[str]) -> dict[str, SiteOptions]:
    """An issuer's `site_options` (tenant or `*` -> options); ValueError naming the problem."""
    if entry is None:
        return {}
    if not isinstance(entry, dict) or not all(isinstance(key, str) and key for key in entry):
        raise ValueError(f"issuer {iss}: site_options maps a tenant (or '*') to its options")
    known = set(declared)
    return {tenant: _options(value, f"issuer {iss}, site_options[{tenant!r}]", known)
            for tenant, value in entry.items()}


def _options(value: Any, where: str, known: set[str]) -> SiteOptions:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: an object of options")
    unknown = set(value) - {"card_types", "minimum_indicator", "link_allowlist", "app_link"}
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {sorted(unknown)}")
    card_types = value.get("card_types")
    if card_types is not None:
        if not isinstance(card_types, list) or not all(isinstance(t, str) for t in card_types):
            raise ValueError(f"{where}: card_types is a list of card types")
        undeclared = sorted(set(card_types) - known)
        if undeclared:
            raise ValueError(f"{where}: unknown card type(s) {undeclared} (declared: {', '.join(sorted(known))})")
        missing = sorted(always_answered_card_types() - set(card_types))
        if missing:
            raise ValueError(f"{where}: card_types must include {missing} (they cannot be turned off)")
    indicator = value.get("minimum_indicator")
    if indicator is not None and indicator not in INDICATORS:
        raise ValueError(f"{where}: minimum_indicator is one of {', '.join(INDICATORS)}")
    allowlist = value.get("link_allowlist")
    if allowlist is not None and (not isinstance(allowlist, list) or not all(
            isinstance(p, str) and p.startswith("https://") and p.count("/") >= 3 for p in allowlist)):
        raise ValueError(f"{where}: link_allowlist is a list of https URL prefixes ending a host, e.g. "
                         "'https://www.acr.org/'")
    app_link = value.get("app_link")
    if app_link is not None and app_link not in APP_LINK_MODES:
        raise ValueError(f"{where}: app_link is one of {', '.join(APP_LINK_MODES)}")
    return SiteOptions(frozenset(card_types) if card_types is not None else None, indicator,
                       tuple(allowlist) if allowlist is not None else None, app_link)


def site_options_for(options: Mapping[str, SiteOptions], tenant: str | None) -> SiteOptions | None:
    """The options for this tenant: its own entry, else the issuer's `*` entry, else none."""
    if tenant is not None and tenant in options:
        return options[tenant]
    return options.get(ANY_TENANT)
