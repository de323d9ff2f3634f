"""Synthetic patients of fhir_fixtures/ for sandbox use: loading, date-rolling and checking against expectations.

A fixture is a FHIR R4 Bundle written against an anchor date, with `<name>.expected.json` beside it. Rolling shifts
every date by the days between the anchor and the evaluation date, so a fixture gives the same advice on any day.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cds_service.sandbox.dateroll import roll
from cds_service.sandbox.search import prefetch_for

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fhir_fixtures"


@dataclass(frozen=True)
class Fixture:
    name: str
    bundle: dict[str, Any]
    expected: dict[str, Any]

    @property
    def anchor(self) -> datetime:
        return datetime.fromisoformat(self.expected["anchor"].replace("Z", "+00:00"))

    @property
    def patient_id(self) -> str:
        return self.expected["patientId"]

    def resources(self, at: datetime | None = None) -> list[dict[str, Any]]:
        """The fixture's resources with dates rolled so that the anchor falls on `at` (default: the anchor)."""
        days = (at.date() - self.anchor.date()).days if at else 0
        return [roll(entry["resource"], days) for entry in self.bundle.get("entry", [])]

    @property
    def draft_orders(self) -> dict[str, Any] | None:
        """The fixture's draft orders (order fixtures), if any."""
        return (self.expected.get("context") or {}).get("draftOrders")

    def hook_request(self, templates: Mapping[str, str], at: datetime | None = None, *,
                     hook: str = "patient-view", user_id: str = "Practitioner/sandbox-user",
                     context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A CDS Hooks request with prefetch built from `templates` as a fully satisfying client would build it."""
        days = (at.date() - self.anchor.date()).days if at else 0
        own = self.expected.get("context") if hook == self.expected.get("hook", "patient-view") else None
        full_context = {"userId": user_id, "patientId": self.patient_id, **roll(own or {}, days), **(context or {})}
        return {
            "hook": hook,
            "hookInstance": str(uuid.uuid4()),
            "context": full_context,
            "prefetch": prefetch_for(templates, full_context, self.resources(at)),
        }


def order_context(fixture: Fixture, hook: str, order: str | None, at: datetime) -> dict[str, Any] | None:
    """The draft orders (and, for order-select, the selection: `order`, else the fixture's own, else every draft order)
    of an order hook call, date-rolled to `at`; None for patient-view. LookupError when there is no such order."""
    if hook == "patient-view":
        return None
    drafts = fixture.draft_orders
    if drafts is None:
        raise LookupError(f"fixture {fixture.name} has no draft orders for {hook}")
    context: dict[str, Any] = {"draftOrders": drafts}
    references = [f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in drafts.get("entry", [])]
    if hook == "order-select":
        own = (fixture.expected.get("context") or {}).get("selections") if fixture.expected["hook"] == hook else None
        if order is not None:
            chosen = [r for r in references if r == order or r.split("/", 1)[1] == order]
            if not chosen:
                raise LookupError(f"no draft order {order!r} in {fixture.name} (orders: {', '.join(references)})")
            context["selections"] = chosen
        else:
            context["selections"] = own or references
    return roll(context, (at.date() - fixture.anchor.date()).days)


def fixtures_dir(path: str | Path | None = None) -> Path:
    """The fixtures folder: the given one, ./fhir_fixtures, or the one beside the package (source checkout)."""
    if path:
        return Path(path)
    local = Path.cwd() / "fhir_fixtures"
    return local if local.is_dir() else FIXTURES_DIR


def load_fixtures(folder: str | Path | None = None) -> list[Fixture]:
    """Every fixture with an expected result, in name order."""
    patients = fixtures_dir(folder) / "patients"
    found = []
    for expected_path in sorted(patients.glob("*.expected.json")):
        name = expected_path.name.removesuffix(".expected.json")
        found.append(Fixture(name, orjson.loads((patients / f"{name}.json").read_bytes()),
                             orjson.loads(expected_path.read_bytes())))
    return found


def find_fixture(name: str, folder: str | Path | None = None) -> Fixture:
    """A fixture by name, number prefix ("07") or file path."""
    candidate = Path(name)
    if candidate.suffix == ".json" and candidate.exists():
        name = candidate.name.removesuffix(".json").removesuffix(".expected")
    matches = [f for f in load_fixtures(folder) if f.name == name or f.name.split("-", 1)[0] == name
               or f.name.split("-", 1)[-1] == name]
    if len(matches) != 1:
        raise LookupError(f"no single fixture named {name!r}")
    return matches[0]


def suggested_codes(card: Mapping[str, Any]) -> set[str]:
    """Every code of every resource a card's suggestions create."""
    codes = set()
    for suggestion in card.get("suggestions", []):
        for action in suggestion.get("actions", []):
            resource = action.get("resource") or {}
            codes |= {c.get("code") for c in (resource.get("code") or {}).get("coding", [])}
    return codes


def check(cards: Iterable[Mapping[str, Any]], expected: Mapping[str, Any]) -> list[str]:
    """Differences between the cards of a response and a fixture's expected result (empty when they agree)."""
    cards = list(cards)
    problems = []
    got_types = [card["source"]["topic"]["code"] for card in cards]
    want_types = [card["type"] for card in expected["cards"]]
    if got_types != want_types:
        problems.append(f"card types {got_types} != expected {want_types}")
    by_type = {card["source"]["topic"]["code"]: card for card in cards}
    for want in expected["cards"]:
        got = by_type.get(want["type"])
        if got is None:
            continue
        if got["indicator"] != want["indicator"]:
            problems.append(f"{want['type']}: indicator {got['indicator']} != {want['indicator']}")
        codes = suggested_codes(got)
        missing = [c for c in want.get("mustSuggest", []) if c not in codes]
        unwanted = [c for c in want.get("mustNotSuggest", []) if c in codes]
        if missing:
            problems.append(f"{want['type']}: does not suggest {missing}")
        if unwanted:
            problems.append(f"{want['type']}: suggests {unwanted}")
    return problems


def noon(day: str | None) -> datetime:
    """The evaluation instant of a `--at` date: noon UTC that day (today when not given)."""
    if day is None:
        return datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    parsed = datetime.fromisoformat(day)
    if parsed.tzinfo is None:
        parsed = parsed.replace(hour=12, tzinfo=UTC) if len(day) == 10 else parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
