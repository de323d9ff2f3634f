"""Silent mode: a second knowledge version is evaluated after each live response, its cards recorded marked silent and
never returned, and the report compares the two versions per card type."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cds_service.cli import main
from cds_service.config import ConfigError
from cds_service.fixtures import find_fixture
from cds_service.state import state
from cds_service.storage.models import IssuedCard, SilentCall
from cds_service.terminology.valuesets import value_set_files
from tests.support import SERVICE_IDS, without_call_ids

PV = "/cds-services/fbss-miss-advisor"
CARDS = Path(__file__).resolve().parent.parent / "cards"


def silent_folder(tmp_path: Path, *, thresholds: dict | None = None, value_sets: dict | None = None,
                  cards: dict | None = None) -> str:
    folder = tmp_path / "silent"
    folder.mkdir()
    if thresholds is not None:
        (folder / "thresholds.json").write_bytes(orjson.dumps(thresholds))
    for name, resource in (value_sets or {}).items():
        (folder / "valuesets").mkdir(exist_ok=True)
        (folder / "valuesets" / name).write_bytes(orjson.dumps(resource))
    for name, text in (cards or {}).items():
        (folder / "cards").mkdir(exist_ok=True)
        (folder / "cards" / name).write_text(text)
    return str(folder)


def live_value_set(name: str) -> dict:
    return orjson.loads(next(entry for entry in value_set_files() if entry.name == name).read_bytes())


def call(app, fixture_name: str) -> tuple[list[dict], bytes]:
    """A fixture's call, its response closed as a server closes it once sent (which runs the silent evaluation)."""
    fixture = find_fixture(fixture_name)
    state(app).clock = lambda: fixture.anchor
    hook = fixture.expected["hook"]
    service = next(s for s in state(app).services if s.hook == hook)
    body = fixture.hook_request(service.prefetch, fixture.anchor, hook=hook)
    response = app.test_client().post(f"/cds-services/{SERVICE_IDS[hook]}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_data()
    response.close()
    return orjson.loads(data)["cards"], data


def without_uuids(cards: list[dict]) -> list[dict]:
    cards = copy.deepcopy(cards)
    for card in cards:
        without_call_ids(card)
        for suggestion in card.get("suggestions", ()):
            for action in suggestion.get("actions", ()):
                action.get("resource", {}).pop("id", None)
    return cards


def stored(app, *columns):
    state(app).ledger.flush()
    with state(app).database.connect() as connection:
        return connection.execute(select(*columns)).all()


def report(app, query: str = "") -> dict:
    state(app).ledger.flush()
    return orjson.loads(app.test_client().get("/analytics/feedback" + query).get_data())


@pytest.fixture
def pair(make_app, tmp_path):
    """A live app without silent mode and one with the given silent folder, on separate instance folders."""
    made = []

    def _make(**folder_options):
        live = make_app(INSTANCE_PATH=str(tmp_path / "live"))
        silent = make_app(INSTANCE_PATH=str(tmp_path / "with-silent"),
                          SILENT_KNOWLEDGE=silent_folder(tmp_path, **folder_options))
        made.extend([live, silent])
        return live, silent

    yield _make
    for app in made:
        state(app).ledger.close()


def test_a_threshold_changed_silently_fires_where_live_does_not_and_the_response_is_unchanged(pair):
    """Fixture 06: back pain 70 days after a laminotomy is not yet persistent (PERSISTENT_DAYS 84); a silent version
    with 60 days would give the FBSS imaging card, and it is recorded, never returned."""
    live, with_silent = pair(thresholds={"PERSISTENT_DAYS": 60})
    live_cards, _ = call(live, "06")
    cards, _ = call(with_silent, "06")
    assert live_cards == [] and cards == []  # the response is the live version's
    silent_rows = stored(with_silent, IssuedCard.card_type, IssuedCard.silent, IssuedCard.knowledge_version)
    assert {(card_type, silent) for card_type, silent, _ in silent_rows} >= {("fbss-imaging", True)}
    silent_version = state(with_silent).silent.version
    assert silent_version != state(with_silent).knowledge_version
    assert {version for _, _, version in silent_rows} == {silent_version}
    [comparison] = report(with_silent)["silent"]
    assert comparison["calls"] == 1 and comparison["silentVersion"] == silent_version
    rows = {row["cardType"]: row for row in comparison["cardTypes"]}
    assert rows["fbss-imaging"]["added"] == 1 and rows["fbss-imaging"]["silentPer100Calls"] == 100.0
    assert rows["fbss-imaging"]["livePer100Calls"] == 0.0 and rows["fbss-imaging"]["dropped"] == 0
    assert report(with_silent)["cardTypes"] == []  # silent cards are never in the acceptance report


def test_a_version_identical_but_for_a_card_text_fires_the_same_and_live_cards_are_unchanged(pair, tmp_path):
    template = (CARDS / "fbss-imaging.yaml").read_text()
    changed = template.replace("summary: ", "summary: Reviewed - ", 1)
    assert changed != template
    live, with_silent = pair(cards={"fbss-imaging.yaml": changed})
    live_cards, _ = call(live, "01")
    cards, _ = call(with_silent, "01")
    assert without_uuids(cards) == without_uuids(live_cards) and cards
    assert not any(card["summary"].startswith("Reviewed - ") for card in cards)
    rows = stored(with_silent, IssuedCard.card_uuid, IssuedCard.silent, IssuedCard.content_digest)
    live_rows = [row for row in rows if not row.silent]
    silent_rows = [row for row in rows if row.silent]
    assert {row.card_uuid for row in live_rows} == {card["uuid"] for card in cards}
    assert len(silent_rows) == len(live_rows)
    assert {row.content_digest for row in silent_rows}.isdisjoint({row.content_digest for row in live_rows})
    [comparison] = report(with_silent)["silent"]
    assert all(row["added"] == row["dropped"] == 0 for row in comparison["cardTypes"])
    assert {row["cardType"] for row in comparison["cardTypes"]} == {card["source"]["topic"]["code"] for card in cards}


def test_a_value_set_changed_silently_drops_the_cards_of_the_codes_it_left_out(pair):
    """Fixture 01's surgeries taken out of a silent VS-01: no prior spine surgery, so no FBSS card under it."""
    fixture = find_fixture("01")
    codes = {coding["code"] for resource in fixture.resources() if resource["resourceType"] == "Procedure"
             for coding in resource["code"]["coding"]}
    vs01 = live_value_set("VS-01.json")
    for include in vs01["compose"]["include"]:
        include["concept"] = [concept for concept in include.get("concept", []) if concept["code"] not in codes]
    live, with_silent = pair(value_sets={"VS-01.json": vs01})
    cards, _ = call(with_silent, "01")
    live_types = [card["source"]["topic"]["code"] for card in call(live, "01")[0]]
    assert [card["source"]["topic"]["code"] for card in cards] == live_types and "fbss-imaging" in live_types
    [comparison] = report(with_silent)["silent"]
    rows = {row["cardType"]: row for row in comparison["cardTypes"]}
    assert rows["fbss-imaging"]["dropped"] == 1 and rows["fbss-imaging"]["silentPer100Calls"] == 0.0
    # The live version's lookups are untouched by the silent one's (each version has its own tables).
    assert [card["source"]["topic"]["code"] for card in call(with_silent, "01")[0]] == live_types


def test_order_hooks_are_compared_too_and_the_report_filters_by_source(pair):
    _, with_silent = pair(thresholds={"IMAGING_SUPPRESS_DAYS": 1})
    order_fixtures = ["31", "35", "37", "39"]
    assert {find_fixture(name).expected["hook"] for name in order_fixtures} <= {"order-select", "order-sign"}
    for name in order_fixtures:
        call(with_silent, name)
    calls = stored(with_silent, SilentCall.hook, SilentCall.source, SilentCall.live_card_types)
    assert len(calls) == len(order_fixtures) and {hook for hook, _, _ in calls} <= {"order-select", "order-sign"}
    assert {source for _, source, _ in calls} == {"ehr"}
    assert report(with_silent)["silent"][0]["calls"] == len(order_fixtures)
    assert report(with_silent, "?source=sandbox")["silent"] == []


def test_a_failing_silent_evaluation_never_touches_the_live_answer(pair, caplog, monkeypatch):
    live, with_silent = pair(thresholds={"PERSISTENT_DAYS": 60})
    class BrokenRenderer:
        def render(self, *args, **kwargs):
            return 1 / 0

    monkeypatch.setattr(state(with_silent), "silent",
                        dataclasses.replace(state(with_silent).silent, renderer=BrokenRenderer()))
    with caplog.at_level(logging.ERROR, logger="cds_service.silent"):
        cards, _ = call(with_silent, "01")
    assert without_uuids(cards) == without_uuids(call(live, "01")[0])
    [record] = [r for r in caplog.records if r.message == "silent evaluation failed"]
    assert record.error_type == "ZeroDivisionError"
    assert not [row for row in stored(with_silent, IssuedCard.silent) if row.silent]
    assert stored(with_silent, SilentCall.call_uuid) == []


@pytest.mark.parametrize(("entries", "message"), [
    ({"thresholds.json": b'{"PERSISTENT_DAYS": "soon"}'}, "PERSISTENT_DAYS"),
    ({"thresholds.json": b"[1]"}, "JSON object"),
    ({"rules.py": b""}, "unknown entries"),
    ({"cards/fbss-imaging.yaml": b"type: fbss-imaging\nsummary: '{{ nothing_here }}'\n"}, "fbss-imaging"),
    ({"valuesets/VS-01.json": b'{"resourceType": "ValueSet", "id": "VS-01"}'}, "read-from"),
])
def test_a_broken_silent_version_stops_start_up_with_one_clear_line(make_app, tmp_path, entries, message):
    folder = tmp_path / "broken"
    for name, content in entries.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    with pytest.raises(ConfigError, match="CDS_SILENT_KNOWLEDGE") as raised:
        make_app(SILENT_KNOWLEDGE=str(folder))
    assert message in str(raised.value)


def test_silent_rows_are_stored_on_each_database_and_compared_on_the_page_and_the_cli(make_app, tmp_path, database_url,
                                                                                       monkeypatch):
    app = make_app(DATABASE_URL=database_url, SILENT_KNOWLEDGE=silent_folder(tmp_path, thresholds={
        "PERSISTENT_DAYS": 60}))
    try:
        call(app, "06")
        [imaging] = [card for card in call(app, "01")[0] if card["source"]["topic"]["code"] == "fbss-imaging"]
        feedback = {"card": imaging["uuid"], "outcome": "accepted", "outcomeTimestamp": "2025-06-01T12:05:00Z",
                    "acceptedSuggestions": [{"id": imaging["suggestions"][0]["uuid"]}]}
        assert app.test_client().post(PV + "/feedback", json={"feedback": [feedback]}).status_code == 200
        assert len(stored(app, SilentCall.call_uuid)) == 2
        [comparison] = report(app)["silent"]
        assert comparison["calls"] == 2
        rows = {row["cardType"]: row for row in comparison["cardTypes"]}
        assert rows["fbss-imaging"]["added"] == 1 and rows["fbss-imaging"]["liveAcceptanceRate"] == 1.0
        silent_version = state(app).silent.version
        page = app.test_client().get("/analytics").get_data(as_text=True)
        assert f"Silent knowledge {silent_version}" in page and "<td>fbss-imaging</td><td>50.0</td><td>100.0</td>" \
            "<td>1</td><td>0</td><td>100%</td>" in page
        monkeypatch.setenv("CDS_DATABASE_URL", database_url)
        printed = CliRunner().invoke(main, ["report"])
        assert printed.exit_code == 0, printed.output
        assert f"Silent knowledge {silent_version} beside live" in printed.output and ", 2 calls" in printed.output
        [line] = [line for line in printed.output.splitlines() if line.startswith("fbss-imaging") and "100.0" in line]
        assert line.split()[1:5] == ["50.0", "100.0", "1", "0"]
    finally:
        state(app).ledger.close()
        state(app).database.dispose()


def test_over_http_the_server_evaluates_silently_after_sending_the_response(tmp_path):
    """The real server (gunicorn) closes the response once sent, which runs the silent evaluation."""
    from tests.test_failure_modes import Server  # noqa: PLC0415

    server = Server(tmp_path, workers=1)
    server.env["CDS_SILENT_KNOWLEDGE"] = silent_folder(tmp_path, thresholds={"PERSISTENT_DAYS": 60})
    fixture = find_fixture("06")
    with server:
        import requests  # noqa: PLC0415

        from cds_service.services import patient_view  # noqa: PLC0415

        body = fixture.hook_request(patient_view.SERVICE.prefetch, datetime.now(UTC))  # rolled to the server's today
        for _ in range(3):
            response = requests.post(server.base + PV, json=body, timeout=30)
            assert response.status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = requests.get(server.base + "/analytics/feedback", timeout=10).json()
            if answer["silent"] and answer["silent"][0]["calls"] == 3:
                break
            time.sleep(0.2)
    [comparison] = answer["silent"]
    assert comparison["calls"] == 3
    assert [(row["cardType"], row["live"], row["silent"], row["added"]) for row in comparison["cardTypes"]] == [
        ("fbss-imaging", 0, 3, 3)]


def test_a_silent_version_identical_to_the_live_files_has_the_live_version(make_app, tmp_path):
    """What promotion relies on: the version is a hash of the files in force, wherever they come from."""
    folder = Path(silent_folder(tmp_path, thresholds={"PERSISTENT_DAYS": 84}))  # the default, restated
    (folder / "valuesets").mkdir()
    (folder / "valuesets" / "VS-19.json").write_bytes(
        next(entry for entry in value_set_files() if entry.name == "VS-19.json").read_bytes())
    (folder / "cards").mkdir()
    (folder / "cards" / "red-flag.yaml").write_bytes((CARDS / "red-flag.yaml").read_bytes())
    app = make_app(SILENT_KNOWLEDGE=str(folder))
    try:
        assert state(app).silent.version == state(app).knowledge_version
    finally:
        state(app).ledger.close()
