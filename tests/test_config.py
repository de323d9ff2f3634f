"""Settings: profiles, environment parsing, overrides, refusal of bad values, and the README table in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_service import create_app
from cds_service.config import SETTINGS, ConfigError, load_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_local_profile_is_the_default():
    settings = load_settings({})
    assert settings.profile == "local"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.cors_origins == ("*",)
    assert settings.max_body_bytes == 16 * 1024 * 1024


def test_production_profile_defaults():
    settings = load_settings({"CDS_PROFILE": "production", "CDS_PUBLIC_BASE_URL": "https://cds.example.org"})
    assert settings.is_production
    assert settings.host == "0.0.0.0"  # noqa: S104 (inside the container)
    assert settings.cors_origins == ()


def test_environment_values_are_parsed():
    settings = load_settings({
        "CDS_PORT": "9090", "CDS_MAX_BODY_BYTES": "1024", "CDS_CORS_ORIGINS": "https://a.org, https://b.org",
        "CDS_LOG_LEVEL": "debug", "CDS_WORKERS": "3",
    })
    assert settings.port == 9090
    assert settings.max_body_bytes == 1024
    assert settings.cors_origins == ("https://a.org", "https://b.org")
    assert settings.log_level == "DEBUG"
    assert settings.worker_count() == 3


def test_zero_workers_means_one_per_core():
    assert load_settings({}).worker_count() >= 1


def test_overrides_beat_the_environment():
    assert load_settings({"CDS_PORT": "9090"}, {"PORT": 7070}).port == 7070


@pytest.mark.parametrize(("environ", "message"), [
    ({"CDS_PROFILE": "staging"}, "CDS_PROFILE"),
    ({"CDS_PORT": "eighty"}, "CDS_PORT"),
    ({"CDS_PORT": "70000"}, "CDS_PORT"),
    ({"CDS_MAX_BODY_BYTES": "0"}, "CDS_MAX_BODY_BYTES"),
    ({"CDS_LOG_LEVEL": "chatty"}, "CDS_LOG_LEVEL"),
    ({"CDS_PUBLIC_BASE_URL": "cds.example.org"}, "CDS_PUBLIC_BASE_URL"),
    ({"CDS_WORKERS": "-1"}, "CDS_WORKERS"),
    ({"CDS_THREADS": "0"}, "CDS_THREADS"),
    ({"CDS_PATIENT_HASH_SECRET": "short"}, "CDS_PATIENT_HASH_SECRET must be at least 32 characters"),
    ({"CDS_SPOOL_MAX_BYTES": "0"}, "CDS_SPOOL_MAX_BYTES"),
    ({"CDS_DATABASE_TIMEOUT_SECONDS": "0"}, "CDS_DATABASE_TIMEOUT_SECONDS"),
    # Production without its public URL would take the JWT audience from the Host header, which the caller sets.
    ({"CDS_PROFILE": "production"}, "CDS_PUBLIC_BASE_URL is required"),
])
def test_bad_values_are_refused_at_start_up(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="MAX_BODY"):
        load_settings({}, {"MAX_BODY": 1})


def test_default_database_is_sqlite_in_the_instance_folder():
    assert load_settings({}).database_url_for("/srv/instance") == "sqlite:////srv/instance/cds-service.sqlite3"
    url = "postgresql+psycopg://cds@db/cds"
    assert load_settings({"CDS_DATABASE_URL": url}).database_url_for("/srv/instance") == url


def test_readme_documents_every_setting_in_one_table():
    """The README's configuration table lists exactly the declared settings."""
    text = README.read_text()
    documented = set(re.findall(r"^\| `(CDS_[A-Z_]+)` \|", text, flags=re.MULTILINE))
    assert documented == {setting.env for setting in SETTINGS}


def test_create_app_fails_fast_on_bad_configuration(monkeypatch):
    monkeypatch.setenv("CDS_PROFILE", "nonsense")
    with pytest.raises(ConfigError):
        create_app()
