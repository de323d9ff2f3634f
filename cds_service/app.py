"""The application factory (`cds_service:create_app`), in the style of Flask's tutorial.

Everything expensive happens here, once per process: settings resolved, service declarations checked, database
engine created. Under gunicorn with `--preload` this runs in the master before the workers fork.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from flask import Flask
from flask_cors import CORS

from cds_service import tracing
from cds_service.clinical import orders as clinical_orders
from cds_service.clinical import rules as clinical_rules
from cds_service.clinical.engine import prepare as prepare_clinical_core
from cds_service.clinical.knowledge import (
    Thresholds,
    always_answered_card_types,
    card_types,
    check_fired,
    declared_card_types,
    fired_card_types,
    load_thresholds,
)
from cds_service.compiled import check_compiled_sources
from cds_service.config import SETTINGS, ConfigError, Settings, load_settings
from cds_service.cpu_slot import BufferedCalls, CpuSlot
from cds_service.fhir.client import FetchPolicy, FhirClient
from cds_service.http import analytics, discovery, feedback, health, invocation, openapi, smart_app
from cds_service.http.errors import register_error_handlers
from cds_service.jsonio import OrjsonProvider
from cds_service.knowledge_version import knowledge_version
from cds_service.logs import install_request_logging, install_security_headers
from cds_service.memory import WorkerMemory
from cds_service.render.cards import CardRenderer
from cds_service.render.catalogue import check_card_types
from cds_service.sandbox import page as sandbox_page
from cds_service.security.issuers import load_trusted_issuers
from cds_service.security.keys import KeyStore
from cds_service.security.middleware import install_authentication
from cds_service.security.replay import ReplayStore
from cds_service.security.verify import TokenVerifier
from cds_service.services import ServiceRegistry, declared_services
from cds_service.services.order_reuse import OrderEvaluations
from cds_service.silent import SilentKnowledge, load_silent_knowledge
from cds_service.state import ServiceState
from cds_service.storage.database import create_database_engine
from cds_service.storage.ledger import CardLedger
from cds_service.storage.migrate import upgrade
from cds_service.storage.patient_hash import patient_hasher
from cds_service.storage.spool import Spool
from cds_service.terminology.valuesets import value_sets

_SETTING_NAMES = {setting.name for setting in SETTINGS}
log = logging.getLogger("cds_service.app")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app. `config` overrides settings by name (e.g. `{"PROFILE": "local"}`) and may also carry
    Flask's own keys (e.g. `TESTING`); everything else comes from `CDS_*` environment variables."""
    check_compiled_sources()  # never run a compiled module that differs from its source
    config = dict(config or {})
    settings = load_settings(overrides={k: v for k, v in config.items() if k in _SETTING_NAMES})
    flask_config = {k: v for k, v in config.items() if k not in _SETTING_NAMES}

    app = Flask(__name__, instance_path=settings.instance_path, instance_relative_config=True)
    app.json = OrjsonProvider(app)
    app.config.update(flask_config)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes

    thresholds = _thresholds(settings)
    compiled_value_sets = value_sets()  # compiled once, before gunicorn forks its workers
    prepare_clinical_core()  # and the lookup tables built from them
    renderer = CardRenderer()  # card templates parsed once, before the workers fork
    # One declaration of the card types (clinical/card-types.json): every rule's card declared, every declared card
    # fired by a rule and given a template, every template declared. Refused at start-up, naming what is missing.
    check_fired(fired_card_types(clinical_rules, clinical_orders), card_types())
    check_card_types(renderer.catalogue, declared_card_types())
    always_answered_card_types()  # the card types no site option may filter out: declared ones (ValueError if not)
    cpu_slot = CpuSlot()
    worker_memory = WorkerMemory(settings.worker_memory_headroom_mb << 20)  # server.py retires the worker
    app.wsgi_app = BufferedCalls(app.wsgi_app, cpu_slot, settings.max_body_bytes,  # type: ignore[method-assign]
                                 worker_memory)
    database = create_database_engine(settings.database_url_for(app.instance_path), settings.database_timeout_seconds)
    upgrade(database)  # the schema is migrated at start-up (also `cds-service db upgrade`), never by hand
    ledger = CardLedger(database, Spool(Path(app.instance_path, "spool")), max_spool_bytes=settings.spool_max_bytes)
    try:
        ledger.replay()  # what a crashed or stopped process left in the spool, before anything new is answered
    except OSError as exc:
        log.error("ledger spool cannot be read at start-up", extra={"error_type": type(exc).__name__})
    # No connection opened here may cross gunicorn's fork: each worker opens its own (server.py disposes again).
    database.dispose()
    verifier = token_verifier(settings, ReplayStore(database))
    app.extensions["cds"] = ServiceState(
        settings=settings, thresholds=thresholds, value_sets=compiled_value_sets, renderer=renderer,
        cpu_slot=cpu_slot, worker_memory=worker_memory,
        fhir_client=FhirClient(max_per_origin=settings.fhir_max_concurrent_per_origin, cpu_slot=cpu_slot),
        fetch_policy=FetchPolicy(
            production=settings.is_production, deadline=settings.fhir_deadline_seconds,
            connect_timeout=settings.fhir_connect_timeout_seconds, read_timeout=settings.fhir_read_timeout_seconds,
            max_pages=settings.fhir_max_pages, max_response_bytes=settings.fhir_max_response_bytes,
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in settings.fhir_allowed_networks)),
        services=ServiceRegistry(declared_services()), database=database, ledger=ledger,
        patient_hasher=patient_hasher(settings.patient_hash_secret, app.instance_path),
        knowledge_version=knowledge_version(thresholds), verifier=verifier,
        silent=_silent_knowledge(settings) if settings.silent_knowledge else None)
    instance = app.extensions["cds"]
    if settings.order_reuse_seconds > 0 and instance.silent is None:  # silent mode compares every call afresh
        instance.order_evaluations = OrderEvaluations(settings.order_reuse_seconds, settings.order_reuse_entries,
                                                      instance.knowledge_version)
    tracing.configure(settings.otlp_endpoint)  # per process: server.py configures each worker again after the fork
    _install_cors(app, settings)
    install_request_logging(app)
    install_authentication(app, verifier, required=settings.is_production)
    install_security_headers(app)
    register_error_handlers(app)
    for blueprint in (discovery.bp, invocation.bp, feedback.bp, health.bp, openapi.bp, analytics.bp,
                      smart_app.bp):
        app.register_blueprint(blueprint)
    if not settings.is_production:
        app.register_blueprint(sandbox_page.bp)  # the built-in sandbox is a local tool, never served in production
    return app


def _silent_knowledge(settings: Settings) -> SilentKnowledge:
    """The silent knowledge version (CDS_SILENT_KNOWLEDGE), checked like the live one; a bad one stops start-up."""
    try:
        silent = load_silent_knowledge(settings.silent_knowledge or "", settings.thresholds_file)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"CDS_SILENT_KNOWLEDGE: {exc}") from None
    log.info("silent knowledge version evaluated beside the live one", extra={"silent_version": silent.version})
    return silent


def token_verifier(settings: Settings, replay: ReplayStore) -> TokenVerifier:
    """The client-JWT verifier: trusted issuers checked at start-up; `replay` the store of used token ids (the
    service's database; `cds-service check-token` passes one that spends nothing)."""
    try:
        issuers = load_trusted_issuers(settings.trusted_issuers, local=not settings.is_production)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CDS_TRUSTED_ISSUERS: {exc}") from exc
    if settings.is_production and not issuers:
        log.warning("production profile without CDS_TRUSTED_ISSUERS: every CDS request will be refused (401)")
    return TokenVerifier(issuers, KeyStore(settings.jwks_min_refresh_seconds), replay,
                         algorithms=settings.jwt_algorithms, leeway_seconds=settings.jwt_leeway_seconds,
                         max_lifetime_seconds=settings.jwt_max_lifetime_seconds)


def _thresholds(settings: Settings) -> Thresholds:
    """The clinical thresholds, with the deployment's overrides (CDS_THRESHOLDS_FILE) checked at start-up."""
    try:
        return load_thresholds(settings.thresholds_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CDS_THRESHOLDS_FILE: {exc}") from exc


def _install_cors(app: Flask, settings: Settings) -> None:
    """CORS for browser-based CDS clients (the CDS Hooks Sandbox): preflight needs no authentication (S3)."""
    origins = list(settings.cors_origins)
    if not origins:
        return
    CORS(
        app,
        resources={r"/cds-services*": {}},
        origins=origins,
        methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["X-Request-ID"],
        supports_credentials=False,
        max_age=600,
        always_send=False,  # CORS headers only when a browser sends Origin (an EHR's server-to-server call does not)
        # Chrome's Private Network Access: the public CDS Hooks Sandbox (an https site) calling a local service.
        allow_private_network=not settings.is_production,
    )
