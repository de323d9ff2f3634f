"""Settings of the service, read from `CDS_*` environment variables.

Every setting is declared once, in `SETTINGS`, with its environment variable, its default per profile and the
sentence that documents it; the README's configuration table is checked against this list by a test, so the two
cannot drift. Two profiles exist: `local` (a developer's machine, `make run`) and `production` (the Docker image).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PROFILES = ("local", "production")
MIN_SECRET_LENGTH = 32


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; raised at start-up, never on a request."""


@dataclass(frozen=True)
class Setting:
    """One configurable value: its environment variable, parser, per-profile default and documentation."""

    name: str
    parse: Callable[[str], Any]
    doc: str
    local: Any = None
    production: Any = None

    @property
    def env(self) -> str:
        return f"CDS_{self.name}"

    def default(self, profile: str) -> Any:
        return self.local if profile == "local" else self.production


def _int(text: str) -> int:
    return int(text.strip())


def _str(text: str) -> str:
    return text.strip()


def _float(text: str) -> float:
    return float(text.strip())


def _list(text: str) -> tuple[str, ...]:
    """A comma-separated list (origins, algorithms)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _networks(text: str) -> tuple[str, ...]:
    """A comma-separated list of IP networks (CIDR), each checked."""
    import ipaddress  # noqa: PLC0415

    networks = _list(text)
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
    return networks


def _app_link(text: str) -> str:
    from cds_service.render.app_link import APP_LINK_MODES  # noqa: PLC0415

    mode = text.strip()
    if mode not in APP_LINK_MODES:
        raise ValueError(f"one of {', '.join(APP_LINK_MODES)}, not {text!r}")
    return mode


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"unknown log level {text!r}")
    return level


SETTINGS: tuple[Setting, ...] = (
    Setting("PROFILE", _str, "`local` (developer machine, the default) or `production` (the Docker image's default).",
            "local", "production"),
    Setting("HOST", _str, "Address `cds-service serve` binds to.", "127.0.0.1", "0.0.0.0"),  # noqa: S104
    Setting("PORT", _int, "Port `cds-service serve` listens on.", 8080, 8080),
    Setting("WORKERS", _int, "gunicorn worker processes; `0` means one per CPU core.", 0, 0),
    Setting("THREADS", _int, "Threads per worker (gunicorn gthread): how many calls one worker holds at once, so that "
            "a slow client holds a thread, not the worker.", 8, 8),
    Setting("INSTANCE_PATH", _str, "Folder for local state (the SQLite database). Default: Flask's instance "
            "folder, `./instance` in a source checkout.", None, None),
    Setting("DATABASE_URL", _str, "SQLAlchemy URL of the service's database. Default: SQLite file "
            "`cds-service.sqlite3` in the instance folder. PostgreSQL: `postgresql+psycopg://user:pw@host/db`.",
            None, None),
    Setting("MAX_BODY_BYTES", _int, "Largest request body accepted; larger ones get 413.",
            16 * 1024 * 1024, 16 * 1024 * 1024),
    Setting("WORKER_MEMORY_HEADROOM_MB", _int, "How much larger than its size between large calls a worker may be "
            "left by calls whose body passes 1 MB (memory CPython's allocator cannot give back) before it is replaced: "
            "it finishes the calls it holds, writes its ledger and exits, and a fresh worker takes its place. `0` "
            "never replaces one.", 8, 8),
    Setting("MAX_DRAFT_ORDERS", _int, "Most draft orders one order-select or order-sign call may carry; more are "
            "answered 413 (each order is validated as FHIR R4, which is what a call spends most on).", 100, 100),
    Setting("ORDER_REUSE_SECONDS", _float, "How long an order evaluation is kept for an order-select or order-sign "
            "call with exactly the same inputs (same client, patient, user, draft orders, evaluated orders, prefetch, "
            "knowledge version and day), which is then answered from it without reading the FHIR server again. Per "
            "worker; an evaluation with unavailable data is never kept; off while a silent knowledge version runs "
            "(it compares every call). `0` turns reuse off.", 120.0, 120.0),
    Setting("ORDER_REUSE_ENTRIES", _int, "Most order evaluations one worker keeps for reuse (the oldest go first; "
            "each holds the findings only, no patient data).", 1000, 1000),
    Setting("APP_LINK", _app_link, "How cards link to the evidence app (`/smart/`): `smart` (a SMART app link with "
            "`appContext` naming the card), `absolute` (a plain link to the app's standalone launch, for clients "
            "without SMART links or `appContext`), or `none`. A site option (`app_link`) overrides it per issuer or "
            "tenant.",
            "smart", "smart"),
    Setting("SMART_CLIENT_ID", _str, "The OAuth client id the evidence app asks the EHR's authorization server for "
            "(the id the app is registered with at the EHR).", "fbss-evidence-timeline", "fbss-evidence-timeline"),
    Setting("CORS_ORIGINS", _list, "Comma-separated browser origins allowed by CORS; `*` allows any. "
            "Local: any; production: none unless listed.", ("*",), ()),
    Setting("PUBLIC_BASE_URL", _str, "Externally visible base URL of the service (scheme, host, optional path "
            "prefix), e.g. `https://cds.example.org`: the JWT audience is this plus the endpoint's path. Required in "
            "production (the Host header never decides the audience).", None, None),
    Setting("FHIR_DEADLINE_SECONDS", _float, "Time budget for all FHIR-server calls of one hook request (backfill "
            "of prefetch the client did not send); what is not back by then counts as unavailable.", 2.0, 2.0),
    Setting("FHIR_CONNECT_TIMEOUT_SECONDS", _float, "Connect timeout of each FHIR-server call (capped by the "
            "remaining deadline).", 0.5, 0.5),
    Setting("FHIR_READ_TIMEOUT_SECONDS", _float, "Read timeout of each FHIR-server call (capped by the remaining "
            "deadline).", 1.5, 1.5),
    Setting("FHIR_MAX_RESPONSE_BYTES", _int, "Largest FHIR-server response read, after decompression (larger "
            "ones, a gzip bomb included, count as unavailable).", 32 * 1024 * 1024, 32 * 1024 * 1024),
    Setting("FHIR_MAX_CONCURRENT_PER_ORIGIN", _int, "FHIR-server calls one worker makes at once to one server "
            "(scheme, host, port), so a slow server cannot take the capacity used for the others.", 4, 4),
    Setting("FHIR_ALLOWED_NETWORKS", _networks, "Comma-separated private networks (CIDR, e.g. `10.20.0.0/16`) the "
            "production profile may read a fhirServer from; any other private, loopback or link-local address is "
            "refused before connecting (server-side request forgery). The local profile reads from anywhere.", (), ()),
    Setting("FHIR_MAX_PAGES", _int, "Most search pages followed per prefetch key (`next` links); more makes the data "
            "incomplete, hence unavailable.", 10, 10),
    Setting("DATABASE_TIMEOUT_SECONDS", _float, "Connect timeout and longest wait for a pooled connection to the "
            "database; past it the call is answered 503 with Retry-After (never a hang).", 3.0, 3.0),
    Setting("SPOOL_MAX_BYTES", _int, "Largest size of the ledger spool (cards answered and not yet in the database, "
            "in the instance folder's `spool/`); past it the instance is not ready and new cards are refused (503).",
            256 * 1024 * 1024, 256 * 1024 * 1024),
    Setting("TRUSTED_ISSUERS", _str, "JSON file of the JWT issuers (CDS clients) the service trusts, with their keys "
            "(see README). Production trusts no one else; the local profile also trusts the public CDS Hooks Sandbox.",
            None, None),
    Setting("JWT_ALGORITHMS", _list, "Comma-separated JWT algorithms accepted (asymmetric only; `none` and HMAC "
            "are always refused).", ("ES384", "RS384"), ("ES384", "RS384")),
    Setting("JWT_LEEWAY_SECONDS", _int, "Clock skew tolerated on `exp` and `iat`.", 60, 60),
    Setting("JWT_MAX_LIFETIME_SECONDS", _int, "Longest accepted token lifetime (`exp` - `iat`).", 3600, 3600),
    Setting("JWKS_MIN_REFRESH_SECONDS", _int, "Least time between two fetches of a remote JWKS (an unknown `kid` "
            "triggers at most one refetch per interval).", 60, 60),
    Setting("PATIENT_HASH_SECRET", _str, "Key of the HMAC that stands for the patient in the card ledger, at least 32 "
            "characters. Default: a "
            "random key generated once into the instance folder; set the same value on every instance sharing a "
            "database.", None, None),
    Setting("THRESHOLDS_FILE", _str, "JSON file overriding clinical thresholds by name, e.g. "
            "`{\"HBA1C_UNCONTROLLED_PERCENT\": 7.5}` (defaults: `cds_service/clinical/thresholds.json`).", None, None),
    Setting("SILENT_KNOWLEDGE", _str, "Folder of a silent knowledge version (value sets, card templates, thresholds "
            "replacing the live files of the same name): evaluated on every call after the response is sent, its "
            "cards recorded and never returned, compared with the live version in /analytics. See README, Silent "
            "mode.", None, None),
    Setting("OTLP_ENDPOINT", _str, "OpenTelemetry OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`. "
            "Set, a span per hook call (child spans per FHIR read and the ledger write) is exported; attributes carry "
            "no patient data. Needs the `tracing` extra (`pip install '.[tracing]'`; the Docker image has it). "
            "Default: off.", None, None),
    Setting("LOG_LEVEL", _log_level, "Level of the JSON log lines written to standard error.", "INFO", "INFO"),
)


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one application instance (immutable; built once at start-up)."""

    profile: str
    host: str
    port: int
    workers: int
    threads: int
    instance_path: str | None
    database_url: str | None
    max_body_bytes: int
    worker_memory_headroom_mb: int
    max_draft_orders: int
    order_reuse_seconds: float
    order_reuse_entries: int
    app_link: str
    smart_client_id: str
    cors_origins: tuple[str, ...]
    public_base_url: str | None
    fhir_deadline_seconds: float
    fhir_connect_timeout_seconds: float
    fhir_read_timeout_seconds: float
    fhir_max_response_bytes: int
    fhir_max_concurrent_per_origin: int
    fhir_allowed_networks: tuple[str, ...]
    fhir_max_pages: int
    database_timeout_seconds: float
    spool_max_bytes: int
    trusted_issuers: str | None
    jwt_algorithms: tuple[str, ...]
    jwt_leeway_seconds: int
    jwt_max_lifetime_seconds: int
    jwks_min_refresh_seconds: int
    patient_hash_secret: str | None
    thresholds_file: str | None
    silent_knowledge: str | None
    otlp_endpoint: str | None
    log_level: str

    @property
    def is_production(self) -> bool:
        return self.profile == "production"

    def worker_count(self) -> int:
        """gunicorn workers: the configured number, or one per core (each runs one call's CPU work at a time)."""
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def database_url_for(self, instance_path: str) -> str:
        """The configured database URL, or the embedded SQLite default inside the instance folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(instance_path, 'cds-service.sqlite3')}"


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Resolve every setting: an override (test config, by setting name) beats the environment beats the default.

    Values in `overrides` are already typed (e.g. `{"MAX_BODY_BYTES": 1024}`); environment values are strings and
    are parsed. Unknown override names are an error, so a typo in test config cannot silently do nothing.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    known = {setting.name for setting in SETTINGS}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")

    profile = overrides.get("PROFILE") or environ.get("CDS_PROFILE", "local").strip() or "local"
    if profile not in PROFILES:
        raise ConfigError(f"CDS_PROFILE must be one of {', '.join(PROFILES)}, not {profile!r}")

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in overrides:
            value = overrides[setting.name]
        elif environ.get(setting.env, "").strip():
            try:
                value = setting.parse(environ[setting.env])
            except ValueError as exc:
                raise ConfigError(f"{setting.env}: {exc}") from exc
        else:
            value = setting.default(profile)
        values[setting.name.lower()] = value
    values["profile"] = profile

    settings = Settings(**{f.name: values[f.name] for f in fields(Settings)})
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if not 0 < settings.port < 65536:
        raise ConfigError(f"CDS_PORT must be a TCP port, not {settings.port}")
    if settings.max_body_bytes <= 0:
        raise ConfigError("CDS_MAX_BODY_BYTES must be positive")
    if settings.worker_memory_headroom_mb < 0:
        raise ConfigError("CDS_WORKER_MEMORY_HEADROOM_MB must be 0 (never replace a worker) or more")
    if settings.max_draft_orders < 1:
        raise ConfigError("CDS_MAX_DRAFT_ORDERS must be at least 1")
    if settings.order_reuse_seconds < 0 or settings.order_reuse_entries < 1:
        raise ConfigError("CDS_ORDER_REUSE_SECONDS must be 0 (no reuse) or more, CDS_ORDER_REUSE_ENTRIES at least 1")
    if min(settings.fhir_deadline_seconds, settings.fhir_connect_timeout_seconds,
           settings.fhir_read_timeout_seconds) <= 0 or settings.fhir_max_pages < 1:
        raise ConfigError("CDS_FHIR_* timeouts must be positive and CDS_FHIR_MAX_PAGES at least 1")
    if settings.workers < 0:
        raise ConfigError("CDS_WORKERS must be 0 (one per core) or more")
    if settings.threads < 1:
        raise ConfigError("CDS_THREADS must be at least 1")
    if min(settings.fhir_max_response_bytes, settings.fhir_max_concurrent_per_origin, settings.spool_max_bytes) < 1 \
            or settings.database_timeout_seconds <= 0:
        raise ConfigError("CDS_FHIR_MAX_RESPONSE_BYTES, CDS_FHIR_MAX_CONCURRENT_PER_ORIGIN, CDS_SPOOL_MAX_BYTES and "
                          "CDS_DATABASE_TIMEOUT_SECONDS must be positive")
    if settings.patient_hash_secret is not None and len(settings.patient_hash_secret) < MIN_SECRET_LENGTH:
        # A short key makes the patient hash guessable by trying the ids of a hospital's patients.
        raise ConfigError(f"CDS_PATIENT_HASH_SECRET must be at least {MIN_SECRET_LENGTH} characters (e.g. the "
                          "output of `openssl rand -hex 32`)")
    if settings.is_production and not settings.public_base_url:
        # Otherwise the expected JWT audience would come from the request's Host header, which the caller chooses:
        # a token minted for another service would be accepted with a spoofed Host.
        raise ConfigError("CDS_PUBLIC_BASE_URL is required in the production profile (the JWT audience is this URL "
                          "plus the endpoint's path), e.g. https://cds.example.org")
    if settings.public_base_url and not settings.public_base_url.startswith(("https://", "http://")):
        raise ConfigError("CDS_PUBLIC_BASE_URL must be an absolute http(s) URL")
