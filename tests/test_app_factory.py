"""create_app: test config is injectable; the environment is read when no override is given."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner
from flask import Flask

from cds_service import create_app
from cds_service.cli import main
from cds_service.config import ConfigError
from cds_service.state import state
from cds_service.storage.migrate import head_revision
from cds_service.terminology.valuesets import live_terminology
from tests.support import hook_request


def test_create_app_with_test_config(tmp_path):
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path), "MAX_BODY_BYTES": 4096})
    assert isinstance(app, Flask)
    assert app.testing
    assert app.config["MAX_CONTENT_LENGTH"] == 4096
    assert app.instance_path == str(tmp_path)
    assert state(app).settings.profile == "local"
    assert {blueprint for blueprint in app.blueprints} >= {"discovery", "invocation", "feedback", "health",
                                                          "openapi"}


def test_create_app_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CDS_PROFILE", "production")
    monkeypatch.setenv("CDS_PUBLIC_BASE_URL", "https://cds.example.org")
    monkeypatch.setenv("CDS_INSTANCE_PATH", str(tmp_path))
    app = create_app()
    assert state(app).settings.is_production
    assert not app.testing


def test_thresholds_come_from_data_with_a_deployment_override(tmp_path):
    assert state(create_app({"INSTANCE_PATH": str(tmp_path)})).thresholds.hba1c_uncontrolled_percent == 8.0
    override = tmp_path / "thresholds.json"
    override.write_text('{"HBA1C_UNCONTROLLED_PERCENT": 7.5, "BMI_RISK": 40}')
    app = create_app({"INSTANCE_PATH": str(tmp_path), "THRESHOLDS_FILE": str(override)})
    thresholds = state(app).thresholds
    assert (thresholds.hba1c_uncontrolled_percent, thresholds.bmi_risk, thresholds.persistent_days) == (7.5, 40, 84)


@pytest.mark.parametrize("content", ['{"NO_SUCH_THRESHOLD": 1}', '{"BMI_RISK": "high"}', "[1]", "not json"])
def test_bad_threshold_override_stops_start_up(tmp_path, content):
    override = tmp_path / "thresholds.json"
    override.write_text(content)
    with pytest.raises(ConfigError, match="CDS_THRESHOLDS_FILE"):
        create_app({"INSTANCE_PATH": str(tmp_path), "THRESHOLDS_FILE": str(override)})


def test_missing_threshold_override_file_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="CDS_THRESHOLDS_FILE"):
        create_app({"INSTANCE_PATH": str(tmp_path), "THRESHOLDS_FILE": str(tmp_path / "absent.json")})


def test_database_url_is_configurable(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    app = create_app({"INSTANCE_PATH": str(tmp_path / "i"), "DATABASE_URL": url})
    assert str(state(app).database.url) == url


def test_db_upgrade_command_migrates_the_configured_database(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"schema at revision {head_revision()}" in result.output and (tmp_path / "cli.sqlite3").exists()


def test_db_upgrade_against_an_unreachable_database_says_so_in_one_line(tmp_path, monkeypatch):
    """A migration job's log: one line naming the failure, exit status 1, no traceback and no password."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket is closed
    monkeypatch.setenv("CDS_DATABASE_URL", f"postgresql+psycopg://cds:s3cret-pw@127.0.0.1:{port}/cds")
    monkeypatch.setenv("CDS_DATABASE_TIMEOUT_SECONDS", "2")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the database could not be migrated (OperationalError): ")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert "s3cret-pw" not in result.output


def test_the_knowledge_lookups_are_built_at_start_up_not_by_the_first_hook_call(tmp_path):
    """Before gunicorn forks, so no worker's first hook call builds them (it cost about 20 ms per worker)."""
    live_terminology.cache_clear()
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path)})
    terminology = live_terminology()
    built = set(terminology._derived)
    assert {("ingredients", "VS-19"), ("ingredients", "VS-20"), "drug-class", ("read_from", "Condition")} <= built
    # A medication no code identifies is read by the ingredient names in its text: both lookups are used.
    medication = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                  "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-11-01",
                  "medicationCodeableConcept": {"text": "Tramadol 50 mg tablet"}}
    body = hook_request(prefetch={"medicationRequests": {"resourceType": "Bundle", "type": "searchset",
                                                         "entry": [{"resource": medication}]}})
    assert app.test_client().post("/cds-services/fbss-miss-advisor", json=body).status_code == 200
    assert live_terminology() is terminology
    assert set(terminology._derived) == built  # nothing built by the hook call
    assert terminology.derived("drug-class", dict).cache_info().currsize == 1  # the tramadol, classified by name
