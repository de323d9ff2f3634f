"""`cds-service simulate`: a fixture patient through the real HTTP app, printed as a clinician would see it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from flask import Flask

from cds_service.app import create_app
from cds_service.fixtures import Fixture, check, find_fixture, load_fixtures, noon, order_context
from cds_service.http.answered import CALL_SOURCE
from cds_service.state import state

_MARK = {"critical": "[CRITICAL]", "warning": "[WARNING]", "info": "[INFO]"}


def _app(instance: str | None = None) -> Flask:
    config: dict[str, Any] = {"TESTING": True}
    if instance:
        config["INSTANCE_PATH"] = instance
    return create_app(config)


def call(app: Flask, fixture: Fixture, hook: str, at: datetime, order: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST the fixture's hook request (prefetch from the service's own templates) with the clock pinned at `at`."""
    service = next(s for s in state(app).services if s.hook == hook)
    state(app).clock = lambda: at
    body = fixture.hook_request(service.prefetch, at, hook=hook, context=order_context(fixture, hook, order, at))
    response = app.test_client().post(f"/cds-services/{service.id}", json=body,
                                       environ_overrides={CALL_SOURCE: "simulate"})
    return response.status_code, orjson.loads(response.get_data())


def render_text(cards: list[dict[str, Any]]) -> str:
    """Cards as an EHR would show them: indicator, summary, detail, suggestions, links."""
    if not cards:
        return "No cards."
    blocks = []
    for card in cards:
        lines = [f"{_MARK[card['indicator']]} {card['summary']}", f"    type: {card['source']['topic']['code']}"]
        lines += ["    " + line for line in card.get("detail", "").splitlines()]
        for suggestion in card.get("suggestions", []):
            parts = []
            for action in suggestion["actions"]:
                if action["type"] == "delete":
                    parts.append(f"delete {action['resourceId']}")
                else:
                    parts.append(", ".join(c["code"] for c in action["resource"].get("code", {}).get("coding", [])))
            star = " (recommended)" if suggestion.get("isRecommended") else ""
            lines.append(f"    [+] {suggestion['label']}{star} — {'; '.join(parts)}")
        for link in card.get("links", []):
            lines.append(f"    link: {link['label']} <{link['url']}>")
        reasons = ", ".join(r["display"] for r in card.get("overrideReasons", []))
        lines.append(textwrap.fill(f"dismiss: {reasons}", 116, initial_indent="    ", subsequent_indent="      "))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def simulate_fixture(name: str, *, hook: str | None = None, at: str | None = None, folder: str | None = None,
                     as_json: bool = False, order: str | None = None) -> str:
    fixture = find_fixture(name, folder)
    hook = hook or fixture.expected.get("hook", "patient-view")
    when = noon(at)
    status, body = call(_app(), fixture, hook, when, order)
    if as_json:
        return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    header = f"{fixture.name} — {fixture.expected['description']}\n{hook} at {when.date().isoformat()}: HTTP {status}\n"
    if status != 200:
        return header + orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    return header + "\n" + render_text(body["cards"])


def run_all_fixtures(at: str | None, folder: str | None, echo: Callable[[str], Any] = print) -> bool:
    """Check every fixture against its expected result; print a pass/fail table; True when all pass."""
    app = _app()
    when = noon(at)
    fixtures = load_fixtures(folder)
    failures = 0
    echo(f"{'fixture':40} {'hook':13} result  cards")
    for fixture in fixtures:
        hook = fixture.expected.get("hook", "patient-view")
        status, body = call(app, fixture, hook, when)
        problems = check(body.get("cards", []), fixture.expected) if status == 200 else [f"HTTP {status}"]
        types = ", ".join(c["source"]["topic"]["code"] for c in body.get("cards", [])) or "-"
        echo(f"{fixture.name:40} {hook:13} {'PASS' if not problems else 'FAIL':7} {types}")
        for problem in problems:
            echo(f"{'':55}{problem}")
        failures += bool(problems)
    echo(f"{len(fixtures) - failures} passed, {failures} failed (evaluated at {when.date().isoformat()})")
    return failures == 0
