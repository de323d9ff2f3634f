"""/healthz and /readyz: plain JSON, no authentication; not ready is a 503 OperationOutcome."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import create_engine, inspect

from cds_service.state import state
from cds_service.storage.migrate import current_revision, head_revision
from tests.support import assert_operation_outcome


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_checks_configuration_services_and_database(client, app):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready" and body["degraded"] == []
    assert body["checks"] == {"configuration": "ok", "valueSets": "ok", "services": "ok", "ledger": "ok",
                              "database": "ok"}
    assert body["ledger"] == {"spoolBytes": 0, "backlog": False, "lastWriteProblem": None}


def test_the_database_is_created_and_migrated_at_start_up(app):
    assert Path(app.instance_path, "cds-service.sqlite3").exists()
    assert current_revision(state(app).database) == head_revision()
    assert "seen_token" in inspect(state(app).database).get_table_names()


def test_readyz_is_503_without_compiled_value_sets(app, client):
    state(app).value_sets = {}
    assert_operation_outcome(client.get("/readyz"), 503, "valueSets: not compiled")


def _unreachable_database(app, tmp_path):
    # A SQLite path under a regular file cannot be opened: a real unreachable database, no mocking.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    state(app).database = create_engine(f"sqlite:///{blocker}/db.sqlite3")


def test_readyz_is_503_in_production_when_the_database_is_unreachable(make_app, tmp_path):
    app = make_app(PROFILE="production")
    _unreachable_database(app, tmp_path)
    response = app.test_client().get("/readyz")
    assert_operation_outcome(response, 503, "database: unreachable")
    assert response.headers["Retry-After"] == "5"


def test_readyz_is_degraded_locally_when_the_database_is_unreachable(app, client, tmp_path):
    """Locally the cards still go out (the spool keeps them): ready, and saying so."""
    _unreachable_database(app, tmp_path)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "degraded"
    assert "database unreachable" in response.get_json()["degraded"][0]


def test_readyz_is_503_when_the_schema_is_not_migrated(app, client, tmp_path):
    state(app).database = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert_operation_outcome(client.get("/readyz"), 503, "database: schema at None")


def test_readyz_is_503_while_the_spool_cannot_be_written_and_200_again_after(app, client):
    spool = Path(app.instance_path, "spool")
    shutil.rmtree(spool, ignore_errors=True)
    spool.write_text("a file where the spool folder should be")
    assert_operation_outcome(client.get("/readyz"), 503, "ledger: spool folder cannot be created")
    spool.unlink()
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_sqlite_file_was_deleted_until_the_ledger_recreates_it(app, client):
    Path(app.instance_path, "cds-service.sqlite3").unlink()
    assert_operation_outcome(client.get("/readyz"), 503, "ledger: database file was deleted or replaced")
    state(app).ledger.flush()  # the writer's next turn, without a single card to write
    assert client.get("/readyz").status_code == 200
