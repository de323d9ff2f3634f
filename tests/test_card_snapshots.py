"""Every card of every fixture, as a clinician reads it, against a reviewed snapshot (tests/snapshots/cards.json).

A change of card text, indicator, citation or suggestion fails here until the snapshot is written again and the
difference reviewed (`git diff tests/snapshots/`):

    UPDATE_CARD_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_card_snapshots.py

Card and suggestion uuids are left out (fresh on every call); every fixture is evaluated at its own anchor date.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from cds_service.fixtures import load_fixtures
from tests.support import call_fixture

SNAPSHOT = Path(__file__).parent / "snapshots" / "cards.json"


def _readable(card: dict) -> dict:
    return {
        "type": card["source"]["topic"]["code"],
        "indicator": card["indicator"],
        "summary": card["summary"],
        "detail": card.get("detail", "").splitlines(),
        "source": [card["source"]["label"], card["source"].get("url")],
        "links": [[link["label"], link["url"]] for link in card.get("links", ()) if link["type"] != "smart"],
        "suggestions": [[s["label"], *(a.get("description", "") for a in s["actions"])]
                        for s in card.get("suggestions", ())],
        "overrideReasons": [r["display"] for r in card.get("overrideReasons", ())],
    }


def _every_fixtures_cards(app) -> dict:
    cards = {}
    for fixture in load_fixtures():
        _, _, answered = call_fixture(app, fixture)
        cards[f"{fixture.name} ({fixture.expected['hook']})"] = [_readable(card) for card in answered]
    return cards


def test_every_card_of_every_fixture_matches_its_reviewed_snapshot(app):
    cards = _every_fixtures_cards(app)
    written = orjson.dumps(cards, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if os.environ.get("UPDATE_CARD_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_bytes(written)
    expected = orjson.loads(SNAPSHOT.read_bytes())
    assert sorted(cards) == sorted(expected), "fixtures added or removed: write the snapshot again and review it"
    for name in cards:
        assert cards[name] == expected[name], name
