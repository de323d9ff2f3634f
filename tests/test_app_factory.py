"""create_app: test config is injectable; the environment is read when no override is given."""

from __future__ import annotations

from flask import Flask

from cds_service import create_app


def test_create_app_with_test_config(tmp_path):
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path), "MAX_BODY_BYTES": 4096})
    assert isinstance(app, Flask)
    assert app.testing
    assert app.config["MAX_CONTENT_LENGTH"] == 4096
    assert app.instance_path == str(tmp_path)
    assert app.extensions["cds.settings"].profile == "local"
    assert {blueprint for blueprint in app.blueprints} >= {"discovery", "invocation", "feedback", "health",
                                                          "openapi"}


def test_create_app_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CDS_PROFILE", "production")
    monkeypatch.setenv("CDS_INSTANCE_PATH", str(tmp_path))
    app = create_app()
    assert app.extensions["cds.settings"].is_production
    assert not app.testing


def test_database_url_is_configurable(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    app = create_app({"INSTANCE_PATH": str(tmp_path / "i"), "DATABASE_URL": url})
    assert str(app.extensions["cds.database"].url) == url
