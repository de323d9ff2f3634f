"""Fixtures: an app built with test config in a temporary instance folder, and a schema-checking client."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest
from sqlalchemy import create_engine, make_url, text

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


@contextlib.contextmanager
def fresh_postgres_database():
    """A new, empty PostgreSQL database on the test server (CDS_TEST_POSTGRES_URL), dropped afterwards."""
    admin_url = os.environ.get("CDS_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("no PostgreSQL server given (CDS_TEST_POSTGRES_URL); .ci/run always gives one")
    name = f"cds_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url():
    """PostgreSQL only (what SQLite has no equivalent of: a server to cut off, NUL refused in text)."""
    with fresh_postgres_database() as url:
        yield url
