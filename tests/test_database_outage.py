"""A database that cannot be reached (a real PostgreSQL connection cut by a TCP proxy) through the HTTP surface: never
a 500, never a hang, never a lost card, and the production replay check fails closed with 503 + Retry-After."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from cds_service.fixtures import find_fixture
from cds_service.services import patient_view
from cds_service.state import state
from cds_service.storage.models import Feedback, IssuedCard
from tests.faults import TcpProxy
from tests.issuer import Issuer, bearer, trusted_issuers_file
from tests.support import assert_operation_outcome

PV = "/cds-services/fbss-miss-advisor"
FIXTURE = find_fixture("recurrent-herniation")
ISSUER = Issuer("https://ehr.example.org", "ES384")


def body() -> dict:
    return {**FIXTURE.hook_request(patient_view.SERVICE.prefetch, FIXTURE.anchor), "hookInstance": str(uuid.uuid4())}


@pytest.fixture
def proxied(postgres_url):
    url = make_url(postgres_url)
    with TcpProxy(url.host, url.port or 5432) as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def _stored(app, model, column):
    with state(app).database.connect() as connection:
        return set(connection.execute(select(column)).scalars())


def test_production_fails_closed_with_503_and_retry_after_while_the_replay_store_is_unreachable(make_app, tmp_path,
                                                                                               proxied):
    proxy, url = proxied
    issuers = trusted_issuers_file(tmp_path / "issuers.json", ISSUER.config())
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=issuers, DATABASE_URL=url, DATABASE_TIMEOUT_SECONDS=2)
    state(app).clock = lambda: FIXTURE.anchor
    client = app.test_client()
    assert client.post(PV, json=body(), headers=bearer(ISSUER.token("http://localhost" + PV))).status_code == 200
    proxy.cut()
    started = time.monotonic()
    response = client.post(PV, json=body(), headers=bearer(ISSUER.token("http://localhost" + PV)))
    assert time.monotonic() - started < 5  # bounded by the database timeout, not a hang
    assert_operation_outcome(response, 503, "database cannot be reached")
    assert response.headers["Retry-After"] == "5"
    assert_operation_outcome(client.get("/readyz"), 503, "database: unreachable")
    proxy.restore()
    token = ISSUER.token("http://localhost" + PV)
    assert client.post(PV, json=body(), headers=bearer(token)).status_code == 200
    assert client.post(PV, json=body(), headers=bearer(token)).status_code == 401  # the replay check is back
    state(app).ledger.close()


def test_locally_cards_are_answered_through_an_outage_and_recorded_after_it(make_app, proxied):
    proxy, url = proxied
    app = make_app(DATABASE_URL=url, DATABASE_TIMEOUT_SECONDS=2)
    state(app).clock = lambda: FIXTURE.anchor
    client = app.test_client()
    proxy.cut()
    answered = set()
    for _ in range(5):
        response = client.post(PV, json=body())
        assert response.status_code == 200
        answered |= {card["uuid"] for card in response.get_json()["cards"]}
    assert answered
    readiness = client.get("/readyz").get_json()
    assert readiness["status"] == "degraded" and readiness["ledger"]["spoolBytes"] > 0
    proxy.restore()
    ledger = state(app).ledger
    deadline = time.monotonic() + 20
    while _stored(app, IssuedCard, IssuedCard.card_uuid) != answered and time.monotonic() < deadline:
        ledger.flush()
        time.sleep(0.2)
    assert _stored(app, IssuedCard, IssuedCard.card_uuid) == answered
    ledger.close()


def test_feedback_and_the_report_answer_503_during_an_outage_and_nothing_is_lost_after_a_200(make_app, proxied):
    proxy, url = proxied
    app = make_app(DATABASE_URL=url, DATABASE_TIMEOUT_SECONDS=2)
    client = app.test_client()
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-12-04T09:00:00Z"}
    proxy.cut()
    response = client.post(PV + "/feedback", json={"feedback": [item]})
    assert_operation_outcome(response, 503, "database cannot be reached")
    assert response.headers["Retry-After"] == "5"
    assert_operation_outcome(client.get("/analytics/feedback"), 503, "database cannot be reached")
    proxy.restore()
    assert client.post(PV + "/feedback", json={"feedback": [item]}).status_code == 200  # the client's retry
    assert _stored(app, Feedback, Feedback.card_uuid) == {item["card"]}
    state(app).ledger.close()


def test_no_database_connection_is_left_open_for_the_workers_to_inherit(make_app, postgres_url):
    """create_app (in the gunicorn master) migrates and replays, then closes what it used before the fork."""
    app = make_app(DATABASE_URL=postgres_url)
    assert state(app).database.pool.checkedin() == 0
    assert state(app).database.pool.checkedout() == 0
    state(app).ledger.close()


def test_with_neither_spool_nor_database_a_call_is_refused_rather_than_answered_unrecorded(make_app, proxied):
    proxy, url = proxied
    app = make_app(DATABASE_URL=url, DATABASE_TIMEOUT_SECONDS=2)
    state(app).clock = lambda: FIXTURE.anchor
    spool = Path(app.instance_path, "spool")
    shutil.rmtree(spool, ignore_errors=True)
    spool.write_text("a file where the spool folder should be")
    client = app.test_client()
    assert client.post(PV, json=body()).status_code == 200  # the database takes the rows in the request
    proxy.cut()
    response = client.post(PV, json=body())
    assert_operation_outcome(response, 503, "cannot record the cards")
    assert response.headers["Retry-After"] == "5"
    assert "cards" not in response.get_json()
    proxy.restore()
    state(app).ledger.close()
