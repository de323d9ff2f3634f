"""/healthz and /readyz: plain JSON, no authentication; not ready is a 503 OperationOutcome."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect

from cds_service.storage.migrate import current_revision
from tests.support import assert_operation_outcome


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_checks_configuration_services_and_database(client, app):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {
        "configuration": "ok", "valueSets": "ok", "services": "ok", "database": "ok"}}


def test_the_database_is_created_and_migrated_at_start_up(app):
    assert Path(app.instance_path, "cds-service.sqlite3").exists()
    assert current_revision(app.extensions["cds.database"]) == "0003"
    assert "seen_token" in inspect(app.extensions["cds.database"]).get_table_names()


def test_readyz_is_503_without_compiled_value_sets(app, client):
    app.extensions["cds.value_sets"] = {}
    assert_operation_outcome(client.get("/readyz"), 503, "valueSets: not compiled")


def test_readyz_is_503_when_the_database_is_unreachable(app, client, tmp_path):
    # A SQLite path under a regular file cannot be opened: a real unreachable database, no mocking.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app.extensions["cds.database"] = create_engine(f"sqlite:///{blocker}/db.sqlite3")
    assert_operation_outcome(client.get("/readyz"), 503, "database: unreachable")
