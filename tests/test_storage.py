"""Storage on SQLite and on a real PostgreSQL server: migrations, ledger, idempotent feedback, report, concurrency.

The PostgreSQL half needs CDS_TEST_POSTGRES_URL (a role allowed to create databases); `.ci/run` installs and starts
PostgreSQL and always sets it, so in CI these tests run on both databases.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import hmac
import io
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from selenium.webdriver.common.by import By
from sqlalchemy import column as sa_column
from sqlalchemy import func, insert, inspect, select
from sqlalchemy import table as sa_table
from werkzeug.serving import make_server

from cds_service.cli import main
from cds_service.fixtures import find_fixture
from cds_service.services import patient_view
from cds_service.state import state
from cds_service.storage.database import create_database_engine
from cds_service.storage.ledger import CardLedger
from cds_service.storage.migrate import current_revision, downgrade, head_revision, upgrade
from cds_service.storage.models import Base, Feedback, IssuedCard, IssuedSuggestion
from cds_service.storage.patient_hash import PatientHasher
from cds_service.storage.spool import Spool
from tests.browser import ARTIFACTS, headless_chromium, requires_browser
from tests.support import assert_operation_outcome

PV = "/cds-services/fbss-miss-advisor"
FEEDBACK = PV + "/feedback"


@pytest.fixture
def store_app(make_app, database_url):
    app = make_app(DATABASE_URL=database_url)
    yield app
    state(app).ledger.close()
    state(app).database.dispose()


def item(card=None, outcome="overridden", when="2025-06-01T12:05:31Z", **extra):
    feedback = {"card": card or str(uuid.uuid4()), "outcome": outcome, "outcomeTimestamp": when}
    feedback.update(extra)
    return feedback


def count_rows(engine, model) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def count(app, model) -> int:
    return count_rows(state(app).database, model)


def test_migrations_from_empty_to_head_and_back(database_url):
    engine = create_database_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert {"seen_token", "issued_card", "issued_suggestion", "feedback", "silent_call"} <= set(
            inspect(engine).get_table_names())
        upgrade(engine, "0001")  # no-op: already past it
        downgrade(engine, "base")
        assert "feedback" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


# The issued_card table as revision 0002 made it (the model has grown since: 0004's source).
_ISSUED_CARD_0002 = sa_table("issued_card", *(sa_column(name) for name in (
    "card_uuid", "card_type", "service_id", "hook", "hook_instance", "knowledge_version", "patient_hash", "issued_at")))


def test_cards_written_before_0004_count_as_ehr_calls(database_url):
    engine = create_database_engine(database_url)
    try:
        upgrade(engine, "0003")
        with engine.begin() as connection:
            connection.execute(insert(_ISSUED_CARD_0002).values(
                card_uuid="c-1", card_type="fbss-imaging", service_id="s", hook="patient-view", hook_instance="h",
                knowledge_version="k", patient_hash="p", issued_at=datetime(2026, 11, 1, tzinfo=UTC)))
        upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(select(IssuedCard.source)).scalar_one() == "ehr"
        downgrade(engine, "0003")
        assert "source" not in {c["name"] for c in inspect(engine).get_columns("issued_card")}
        assert count_rows(engine, IssuedCard) == 1
    finally:
        engine.dispose()


def _index_names(engine, table: str) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes(table)}


def test_the_ledger_tables_carry_only_the_indexes_a_query_reads(database_url):
    """Every index is a b-tree insert per issued card or suggestion: 0003 drops those no query reads, 0002's rows
    stay, and its downgrade puts the indexes back."""
    engine = create_database_engine(database_url)
    try:
        upgrade(engine, "0002")
        assert "ix_issued_card_card_type" in _index_names(engine, "issued_card")
        with engine.begin() as connection:
            connection.execute(insert(_ISSUED_CARD_0002).values(
                card_uuid="c-1", card_type="fbss-imaging", service_id="s", hook="patient-view", hook_instance="h",
                knowledge_version="k", patient_hash="p", issued_at=datetime(2026, 11, 1, tzinfo=UTC)))
            connection.execute(insert(IssuedSuggestion.__table__).values(
                suggestion_uuid="s-1", card_uuid="c-1", label="Order MRI"))
        upgrade(engine)
        assert _index_names(engine, "issued_card") == {"ix_issued_card_issued_at"}
        assert _index_names(engine, "issued_suggestion") == set()
        assert count_rows(engine, IssuedCard) == 1 and count_rows(engine, IssuedSuggestion) == 1
        downgrade(engine, "0002")
        assert _index_names(engine, "issued_card") == {"ix_issued_card_card_type", "ix_issued_card_knowledge_version",
                                                       "ix_issued_card_issued_at"}
        assert _index_names(engine, "issued_suggestion") == {"ix_issued_suggestion_card_uuid"}
    finally:
        engine.dispose()


def test_the_models_match_the_migrated_schema(database_url):
    """The ORM models and the migrations describe the same tables, indexes and constraints (Alembic's own
    comparison, as `alembic check` makes it)."""
    engine = create_database_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_feedback_sent_twice_is_one_record(store_app):
    client = store_app.test_client()
    body = {"feedback": [item(outcome="accepted", acceptedSuggestions=[{"id": "s-1"}])]}
    assert client.post(FEEDBACK, json=body).status_code == 200
    assert client.post(FEEDBACK, json=body).status_code == 200
    assert count(store_app, Feedback) == 1


def test_different_feedback_for_one_card_is_kept(store_app):
    card = str(uuid.uuid4())
    client = store_app.test_client()
    client.post(FEEDBACK, json={"feedback": [item(card, when="2025-06-01T12:00:00Z")]})
    client.post(FEEDBACK, json={"feedback": [item(card, outcome="accepted", acceptedSuggestions=[{"id": "x"}],
                                                   when="2025-06-01T12:10:00Z")]})
    assert count(store_app, Feedback) == 2


def test_feedback_for_an_unknown_card_is_stored_and_reported_apart(store_app):
    assert store_app.test_client().post(FEEDBACK, json={"feedback": [item()]}).status_code == 200
    assert count(store_app, Feedback) == 1
    report = orjson.loads(store_app.test_client().get("/analytics/feedback").get_data())
    assert report["unknownCardFeedback"] == 1 and report["cardTypes"] == []


def test_malformed_feedback_is_400_and_nothing_is_stored(store_app):
    response = store_app.test_client().post(FEEDBACK, json={"feedback": [item(outcome="ignored")]})
    assert_operation_outcome(response, 400, "outcome")
    assert count(store_app, Feedback) == 0


def test_eight_concurrent_clients_posting_500_items_each_lose_nothing(store_app):
    errors: list[str] = []

    def client_run(index: int) -> None:
        client = store_app.test_client()
        for n in range(500):
            response = client.post(FEEDBACK, json={"feedback": [item(f"c{index}-{n}")]})
            if response.status_code != 200:
                errors.append(f"{index}/{n}: {response.status_code}")

    threads = [threading.Thread(target=client_run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(store_app, Feedback) == 4000


def test_sqlite_runs_in_wal_mode_without_waiting_for_fsync_on_commit(tmp_path):
    engine = create_database_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
    engine.dispose()


def issue_cards(app, fixture_name="recurrent-herniation"):
    """A real hook call; returns the cards, with the ledger written."""
    fixture = find_fixture(fixture_name)
    state(app).clock = lambda: fixture.anchor
    body = fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)
    cards = orjson.loads(app.test_client().post(PV, json=body).get_data())["cards"]
    state(app).ledger.flush()
    return cards


def test_the_patient_hash_is_hmac_sha256_of_the_id_under_the_secret():
    secret = b"0123456789abcdef-test-secret"
    hasher = PatientHasher(secret)
    expected = hmac.new(secret, b"Patient-1", hashlib.sha256).hexdigest()
    assert hasher("Patient-1") == expected
    assert hasher("Patient-2") != expected
    assert hasher("Patient-1") == expected  # each call starts again from the keyed state
    assert "0123456789abcdef" not in repr(hasher)


def test_the_ledger_keeps_ids_and_a_patient_hash_never_the_patient_id(store_app):
    cards = issue_cards(store_app)
    with state(store_app).database.connect() as connection:
        rows = connection.execute(select(IssuedCard)).all()
    assert {row.card_uuid for row in rows} == {card["uuid"] for card in cards}
    assert {row.card_type for row in rows} == {"fbss-imaging", "revision-referral"}
    assert all(row.knowledge_version == state(store_app).knowledge_version for row in rows)
    patient_id = find_fixture("recurrent-herniation").patient_id
    assert all(row.patient_hash != patient_id and len(row.patient_hash) == 64 for row in rows)
    assert len({row.patient_hash for row in rows}) == 1
    assert count(store_app, IssuedSuggestion) == sum(len(card.get("suggestions", [])) for card in cards)


def test_the_ledger_is_handed_the_rows_never_the_request(store_app):
    # What waits for the writer must be small values: a request (its decoded prefetch) kept alive there until the next
    # flush cost a quarter of the HTTP throughput (bench/).
    ledger = CardLedger(state(store_app).database, Spool(Path(store_app.instance_path, "spool")),
                        flush_interval=60)
    state(store_app).ledger = ledger
    fixture = find_fixture("recurrent-herniation")
    state(store_app).clock = lambda: fixture.anchor
    body = fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)
    cards = orjson.loads(store_app.test_client().post(PV, json=body).get_data())["cards"]
    queued = list(ledger._pending)
    assert [row.card_uuid for item in queued for row in item] == [card["uuid"] for card in cards]
    values = [getattr(row, f.name) for item in queued for row in item for f in dataclasses.fields(row)]
    assert all(isinstance(v, str | datetime | bool) or (isinstance(v, tuple) and all(
        isinstance(s, str) for pair in v for s in pair)) for v in values)
    ledger.close()
    assert count(store_app, IssuedCard) == len(cards)


def test_a_hook_call_followed_by_feedback_gives_the_right_report(store_app):
    first = issue_cards(store_app)
    second = issue_cards(store_app)
    imaging = [c for c in first + second if c["source"]["topic"]["code"] == "fbss-imaging"]
    referral = [c for c in first + second if c["source"]["topic"]["code"] == "revision-referral"]
    mri = imaging[0]["suggestions"][0]
    feedback = [
        item(imaging[0]["uuid"], outcome="accepted", acceptedSuggestions=[{"id": mri["uuid"]}]),
        item(referral[0]["uuid"], overrideReason={"reason": {"code": "already-referred", "system":
                                                                    "urn:spine-cds:override-reason",
                                                             "display": "Already referred"},
                                                  "userComment": "seen by Dr X last week"}),
        item(referral[1]["uuid"], overrideReason={"reason": {"code": "patient-declined",
                                                             "display": "Patient declined"}}),
    ]
    client = store_app.test_client()
    assert client.post(FEEDBACK, json={"feedback": feedback}).status_code == 200
    assert client.post(FEEDBACK, json={"feedback": feedback[:1]}).status_code == 200  # re-sent: no double count
    report = orjson.loads(client.get("/analytics/feedback").get_data())
    by_type = {row["cardType"]: row for row in report["cardTypes"]}
    # The same chart opened twice by the same user: each card shown twice, one presentation (accepted once).
    assert by_type["fbss-imaging"] == {
        "cardType": "fbss-imaging", "knowledgeVersion": state(store_app).knowledge_version,
        "issued": 2, "presentations": 1, "reissued": 1, "accepted": 1, "overridden": 0, "noResponse": 0,
        "acceptanceRate": 1.0, "acceptedSuggestions": {mri["label"]: 1}, "overrideReasons": {}, "comments": 0}
    assert by_type["revision-referral"]["overridden"] == 1 and by_type["revision-referral"]["accepted"] == 0
    assert by_type["revision-referral"]["overrideReasons"] == {"Already referred": 1, "Patient declined": 1}
    assert by_type["revision-referral"]["comments"] == 1
    assert report["unknownCardFeedback"] == 0
    # The comment's text is not stored (free text may hold PHI).
    with state(store_app).database.connect() as connection:
        dumped = str(connection.execute(select(Feedback)).all())
    assert "Dr X" not in dumped


def test_one_override_reason_is_one_row_however_the_client_sends_it(store_app):
    """The public sandbox sends system and code only, other EHRs add the display, some drop the system: one reason,
    one row, labelled with the display this service declared. A code it never offered is named as such."""
    cards = issue_cards(store_app) + issue_cards(store_app) + issue_cards(store_app) + issue_cards(store_app)
    referrals = [c["uuid"] for c in cards if c["source"]["topic"]["code"] == "revision-referral"]
    system = "urn:spine-cds:override-reason"
    feedback = [
        item(referrals[0], overrideReason={"reason": {"system": system, "code": "already-referred"}}),
        item(referrals[1], overrideReason={"reason": {"system": system, "code": "already-referred",
                                                      "display": "Referred already (EHR's own words)"}}),
        item(referrals[2], overrideReason={"reason": {"code": "already-referred"}}),
        item(referrals[3], overrideReason={"reason": {"system": "urn:ehr:reasons", "code": "busy", "display": "Busy"}}),
    ]
    client = store_app.test_client()
    assert client.post(FEEDBACK, json={"feedback": feedback}).status_code == 200
    report = orjson.loads(client.get("/analytics/feedback").get_data())
    reasons = next(r for r in report["cardTypes"] if r["cardType"] == "revision-referral")["overrideReasons"]
    assert reasons == {"Already referred": 3, "Busy (code busy from urn:ehr:reasons, not offered by this service)": 1}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'cds_feedback_total{card_type="revision-referral",outcome="overridden"}' in metrics


def test_cards_of_the_sandbox_page_are_left_out_of_the_report_unless_asked(store_app):
    """The built-in /sandbox page writes its cards into the ledger marked as such; a clinician never saw them."""
    client = store_app.test_client()
    assert client.get("/sandbox?patient=07-recurrent-herniation&hook=patient-view").status_code == 200
    with state(store_app).database.connect() as connection:
        ledger = state(store_app).ledger
        ledger.flush()
        sources = set(connection.execute(select(IssuedCard.source)).scalars())
    assert sources == {"sandbox"}
    assert orjson.loads(client.get("/analytics/feedback").get_data())["cardTypes"] == []
    everything = orjson.loads(client.get("/analytics/feedback?source=all").get_data())
    assert everything["sources"] == "all" and everything["cardTypes"]
    assert orjson.loads(client.get("/analytics/feedback?source=sandbox").get_data())["cardTypes"]
    assert_operation_outcome(client.get("/analytics/feedback?source=fax"), 400, "source")
    issue_cards(store_app)  # an EHR's call, over HTTP: counted by default
    assert orjson.loads(client.get("/analytics/feedback").get_data())["cardTypes"]


def _order_call(app, hook, selections=None):
    from cds_service.services import order_select, order_sign  # noqa: PLC0415

    fixture = find_fixture("order-select-one-of-several")
    state(app).clock = lambda: fixture.anchor
    context = copy.deepcopy(fixture.expected["context"])
    if selections is not None:
        context["selections"] = selections
    service = order_select.SERVICE if hook == "order-select" else order_sign.SERVICE
    if hook == "order-sign":
        context.pop("selections", None)
    body = fixture.hook_request(service.prefetch, fixture.anchor, hook=hook, context=context)
    url = "/cds-services/fbss-miss-orders"
    cards = orjson.loads(app.test_client().post(url, json=body).get_data())["cards"]
    state(app).ledger.flush()
    return {card["source"]["topic"]["code"]: card for card in cards}


def test_an_ordering_session_that_ends_with_one_accepted_card_is_one_presentation_accepted(store_app):
    """Select the opioid, select it again, sign (the MRI too), accept the opioid card's suggestion at signing: three
    opioid cards were issued (new uuids each time, as CDS Hooks requires), one presentation, accepted."""
    first = _order_call(store_app, "order-select", ["MedicationRequest/mr-oxy"])
    again = _order_call(store_app, "order-select", ["MedicationRequest/mr-oxy"])
    signed = _order_call(store_app, "order-sign")
    assert first["opioid-order"]["uuid"] != again["opioid-order"]["uuid"] != signed["opioid-order"]["uuid"]
    card = signed["opioid-order"]
    feedback = [item(card["uuid"], outcome="accepted", acceptedSuggestions=[{"id": card["suggestions"][0]["uuid"]}])]
    assert store_app.test_client().post("/cds-services/fbss-miss-orders/feedback",
                                        json={"feedback": feedback}).status_code == 200
    report = orjson.loads(store_app.test_client().get("/analytics/feedback").get_data())
    opioid = next(r for r in report["cardTypes"] if r["cardType"] == "opioid-order")
    assert (opioid["issued"], opioid["presentations"], opioid["accepted"], opioid["noResponse"]) == (3, 1, 1, 0)
    assert opioid["acceptanceRate"] == 1.0
    imaging = next(r for r in report["cardTypes"] if r["cardType"] == "imaging-protocol")
    assert (imaging["issued"], imaging["presentations"], imaging["noResponse"]) == (1, 1, 1)


def test_the_same_card_later_or_for_another_user_is_another_presentation():
    from types import SimpleNamespace  # noqa: PLC0415

    from cds_service.storage.report import PRESENTATION_WINDOW, presentations  # noqa: PLC0415

    start = datetime(2026, 11, 1, 9, tzinfo=UTC)

    def card(uid, minutes, user="u1", digest="d1", hook="order-select"):
        return SimpleNamespace(card_uuid=uid, issued_at=start + timedelta(minutes=minutes), hook=hook,
                               user_hash=user, patient_hash="p1", card_type="opioid-order", knowledge_version="k",
                               content_digest=digest)

    window = PRESENTATION_WINDOW.total_seconds() / 60
    rows = [card("a", 0), card("b", window - 1), card("c", 2 * window - 2, hook="order-sign"),  # a sliding session
            card("d", 4 * window),                          # later than the window after the last: anew
            card("e", 1, user="u2"), card("f", 2, digest="d2"),  # another user; what the card said changed
            card("g", 3, user=None)]                        # a row written before migration 0005
    assert presentations(rows) == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "e", "f": "f", "g": "g"}


def test_report_since_filters_by_issue_date(store_app):
    issue_cards(store_app)
    later = orjson.loads(store_app.test_client().get("/analytics/feedback?since=2099-01-01").get_data())
    assert later["cardTypes"] == []
    assert_operation_outcome(store_app.test_client().get("/analytics/feedback?since=soon"), 400, "since")


def test_report_until_includes_the_whole_day_named(store_app):
    issue_cards(store_app)  # issued now (the ledger's issued_at is the call's clock: the fixture's anchor)
    client = store_app.test_client()
    with state(store_app).database.connect() as connection:
        issued = connection.execute(select(func.min(IssuedCard.issued_at))).scalar_one()
    day = issued.date()
    same_day = orjson.loads(client.get(f"/analytics/feedback?until={day.isoformat()}").get_data())
    assert same_day["cardTypes"] and same_day["until"].startswith((day + timedelta(days=1)).isoformat())
    before = orjson.loads(client.get(f"/analytics/feedback?until={(day - timedelta(days=1)).isoformat()}").get_data())
    assert before["cardTypes"] == []
    assert_operation_outcome(client.get("/analytics/feedback?until=later"), 400, "until")


def test_the_report_as_csv_over_http_and_from_the_command_line(store_app, database_url, monkeypatch):
    cards = issue_cards(store_app)
    store_app.test_client().post(FEEDBACK, json={"feedback": [item(cards[0]["uuid"])]})
    response = store_app.test_client().get("/analytics/feedback.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    by_type = {row["card_type"]: row for row in rows}
    assert by_type["fbss-imaging"]["overridden"] == "1" and by_type["fbss-imaging"]["acceptance_rate"] == "0.0000"
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    printed = CliRunner().invoke(main, ["report", "--csv"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == response.get_data(as_text=True)


def test_feedback_report_command(store_app, database_url, monkeypatch):
    cards = issue_cards(store_app)
    store_app.test_client().post(FEEDBACK, json={"feedback": [item(cards[0]["uuid"])]})
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    text_report = CliRunner().invoke(main, ["feedback-report"])
    assert text_report.exit_code == 0, text_report.output
    assert "fbss-imaging" in text_report.output and "revision-referral" in text_report.output
    as_json = CliRunner().invoke(main, ["feedback-report", "--json", "--since", "2000-01-01"])
    rows = {row["cardType"]: row for row in orjson.loads(as_json.output)["cardTypes"]}
    assert rows["fbss-imaging"]["overridden"] == 1 and rows["revision-referral"]["noResponse"] == 1


@requires_browser
def test_analytics_page_in_headless_chromium(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'page.sqlite3'}")
    cards = issue_cards(app)
    app.test_client().post(FEEDBACK, json={"feedback": [
        item(cards[0]["uuid"], outcome="accepted", acceptedSuggestions=[{"id": cards[0]["suggestions"][0]["uuid"]}]),
        item(cards[1]["uuid"], overrideReason={"reason": {"code": "already-referred", "display": "Already referred"}}),
    ]})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    driver = headless_chromium(tmp_path / "chrome", "1200,900")
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/analytics")
        rows = driver.find_elements(By.CSS_SELECTOR, "#feedback-table tbody tr")
        table = {r.find_elements(By.TAG_NAME, "td")[0].text: [c.text for c in r.find_elements(By.TAG_NAME, "td")]
                 for r in rows}
        assert table["fbss-imaging"][2:7] == ["1", "1", "0", "0", "100%"]
        assert table["revision-referral"][2:7] == ["1", "0", "1", "0", "0%"]
        assert "Already referred (1)" in table["revision-referral"][8]
        bars = driver.find_elements(By.CSS_SELECTOR, "#acceptance-chart rect.bar")
        assert len(bars) == 2
        # A 0 % bar is drawn, narrow, not left out; the chart has an axis with its ticks.
        [zero] = driver.find_elements(By.CSS_SELECTOR, "#acceptance-chart rect.bar.zero")
        assert zero.get_attribute("width") == "2" and zero.is_displayed()
        assert len(driver.find_elements(By.CSS_SELECTOR, "#acceptance-chart line.axis")) == 1
        ticks = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#acceptance-chart text.tick")]
        assert ticks == ["0%", "25%", "50%", "75%", "100%"]
        # The CSV link downloads the same report.
        href = driver.find_element(By.ID, "csv").get_attribute("href")
        download = requests.get(href, timeout=10)
        assert download.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in download.headers["Content-Disposition"]
        lines = download.text.splitlines()
        assert lines[0].startswith("card_type,knowledge_version,issued,presentations,accepted")
        assert any(line.startswith("revision-referral,") and "Already referred (1)" in line for line in lines)
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "analytics.png"))
    finally:
        driver.quit()
        server.shutdown()


def test_a_card_shown_as_info_at_signing_because_of_the_warning_cap_is_the_same_card():
    from cds_service.http.answered import content_digest  # noqa: PLC0415

    card = {"source": {"topic": {"code": "opioid-order"}}, "indicator": "warning", "summary": "s", "detail": "d",
            "suggestions": [{"label": "Refer to pain management"}]}
    assert content_digest(card) == content_digest({**card, "indicator": "info"})
    assert content_digest(card) != content_digest({**card, "detail": "d, with another order"})


def test_instances_starting_together_on_one_instance_folder_share_one_generated_secret(tmp_path):
    """Replicas on a shared volume (deploy/compose.yaml) each generate a secret at start: one wins, all use it, and
    nobody reads a file half written."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from cds_service.storage.patient_hash import patient_hasher  # noqa: PLC0415

    for attempt in range(20):
        folder = tmp_path / f"instance-{attempt}"
        with ThreadPoolExecutor(8) as pool:
            hashers = list(pool.map(patient_hasher, [None] * 8, [str(folder)] * 8))
        assert len({hasher("p1") for hasher in hashers}) == 1
        assert [path.name for path in folder.iterdir()] == ["patient-hash.secret"]  # no draft left behind
        assert len((folder / "patient-hash.secret").read_text()) == 64
