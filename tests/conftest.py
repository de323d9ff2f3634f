"""Fixtures: an app built with test config in a temporary instance folder, and a schema-checking client."""

from __future__ import annotations

import os

import pytest

from cds_service import create_app
from tests.support import SchemaCheckingClient


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CDS_* setting of the developer's shell leaks into a test (CDS_TEST_* say where test servers are)."""
    for name in list(os.environ):
        if name.startswith("CDS_") and not name.startswith("CDS_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_app(tmp_path):
    def _make(**config):
        config.setdefault("TESTING", True)
        config.setdefault("INSTANCE_PATH", str(tmp_path / "instance"))
        if config.get("PROFILE") == "production":
            config.setdefault("PUBLIC_BASE_URL", "http://localhost")  # the test client's URL root
        app = create_app(config)
        app.test_client_class = SchemaCheckingClient
        return app

    return _make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
