"""`cds-service`: the command line of the service (serve, simulate)."""

from __future__ import annotations

import logging
import sys

import click

from cds_service.compiled import StaleBuild, check_compiled_sources
from cds_service.config import ConfigError, load_settings
from cds_service.logs import configure_logging


@click.group()
def main() -> None:
    """CDS Hooks 2.0 service for failed back surgery syndrome and MISS / revision spine surgery."""


@main.command()
@click.option("--host", default=None, help="Address to bind (default: CDS_HOST, else 127.0.0.1 locally).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: CDS_PORT, else 8080).")
@click.option("--workers", type=int, default=None,
              help="gunicorn sync workers (default: CDS_WORKERS, else one per core).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the CDS Hooks endpoints with gunicorn (the production server, also used by `make run`)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _prepare_multiprocess_metrics()
    try:
        # create_app checks too; here a refusal is a message, not a traceback. After the metrics folder is set: the
        # check imports the compiled modules' packages, and the metrics are created in multiprocess mode or not then.
        check_compiled_sources()
    except StaleBuild as exc:
        raise click.ClickException(str(exc)) from None
    from cds_service.server import GunicornServer  # noqa: PLC0415 (imports the app: after the metrics folder is set)

    configure_logging(settings.log_level)
    server = GunicornServer(
        settings,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers if workers is not None and workers > 0 else settings.worker_count(),
    )
    logging.getLogger("cds_service.server").info(
        f"cds-service ({settings.profile} profile) on http://{host or settings.host}:{port or settings.port}",
        extra={"profile": settings.profile})
    server.run()




def _prepare_multiprocess_metrics() -> None:
    """Workers keep their metrics in files in one fresh folder, so /metrics can add them up (prometheus-client)."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="cds-service-metrics-")
    os.makedirs(folder, exist_ok=True)
    for stale in os.listdir(folder):
        if stale.endswith(".db"):
            os.remove(os.path.join(folder, stale))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def _migrated_database():
    """The configured database (default: SQLite in the instance folder), migrated to the newest schema."""
    from flask import Flask  # noqa: PLC0415 (the instance folder is Flask's default unless configured)
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from cds_service.storage.database import create_database_engine  # noqa: PLC0415
    from cds_service.storage.migrate import upgrade  # noqa: PLC0415

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    engine = create_database_engine(settings.database_url_for(settings.instance_path
                                                              or Flask("cds_service").instance_path))
    try:
        upgrade(engine)
    except SQLAlchemyError as exc:  # one line a deployment's log shows (a migration job, compose), no traceback
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"the database could not be migrated ({type(exc).__name__}): {reason}") from None
    return engine


@main.group()
def db() -> None:
    """The service's database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version (also done at start-up)."""
    from cds_service.storage.database import describe  # noqa: PLC0415
    from cds_service.storage.migrate import current_revision  # noqa: PLC0415

    engine = _migrated_database()
    click.echo(f"{describe(engine)}: schema at revision {current_revision(engine)}")


@main.command("feedback-report")
@click.option("--since", default=None, help="Only cards issued on or after this date (YYYY-MM-DD).")
@click.option("--until", default=None, help="Only cards issued up to and including this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the report as CSV (as GET /analytics/feedback.csv).")
@click.option("--source", "sources", multiple=True, type=click.Choice(["ehr", "sandbox", "simulate", "all"]),
              default=("ehr",), show_default=True,
              help="Count the cards of calls from these sources (repeat the option; 'all' for every call).")
def feedback_report_command(since: str | None, until: str | None, as_json: bool, as_csv: bool,
                            sources: tuple[str, ...]) -> None:
    """What clinicians did with the cards, per card type and knowledge version."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    import orjson  # noqa: PLC0415

    from cds_service.render.catalogue import OVERRIDE_REASON_SYSTEM, declared_override_reasons  # noqa: PLC0415
    from cds_service.storage.report import feedback_report, report_csv, report_text  # noqa: PLC0415

    engine = _migrated_database()
    start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
    end = datetime.fromisoformat(until).replace(tzinfo=UTC) + timedelta(days=1) if until else None
    report = feedback_report(engine, start, declared_reasons=declared_override_reasons(),
                             reason_system=OVERRIDE_REASON_SYSTEM, sources=None if "all" in sources else sources,
                             until=end)
    if as_csv:
        click.echo(report_csv(report), nl=False)
    else:
        click.echo(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode() if as_json
                   else report_text(report))


main.add_command(feedback_report_command, name="report")


@main.command("check-token")
@click.argument("token")
@click.option("--url", "audience", required=True,
              help="The URL the client calls with it (its aud), e.g. https://cds.example.org/cds-services/fbss-miss-advisor.")
def check_token(token: str, audience: str) -> None:
    """Say which check a client JWT passes or fails, as the service would verify it (trusted issuers, keys, algorithm,
    audience, lifetime, tenant), so an integrator can debug a token. Its jti is not spent; no key and no claim but the
    issuer and tenant is printed. Exit status 0 when it would be accepted, 1 otherwise."""
    from datetime import datetime  # noqa: PLC0415

    from cds_service.app import token_verifier  # noqa: PLC0415
    from cds_service.errors import AuthenticationFailed, NotEnabled  # noqa: PLC0415

    class _SpendNothing:
        def first_use(self, iss: str, jti: str, expires_at: datetime) -> bool:
            return True

    try:
        settings = load_settings()
        verifier = token_verifier(settings, _SpendNothing())  # type: ignore[arg-type]
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        client = verifier.verify(token.strip(), audience)
    except AuthenticationFailed as failure:
        click.echo(f"refused (401): {failure.reason} [{failure.category}]")
        sys.exit(1)
    except NotEnabled as refusal:
        click.echo(f"refused (403): {refusal.diagnostics}")
        sys.exit(1)
    click.echo(f"accepted: issuer {client.iss}" + (f", tenant {client.tenant}" if client.tenant else "")
               + " (the replay check was not made: the token's jti is not spent)")


@main.command("fixtures-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8081, show_default=True, help="Port to listen on.")
@click.option("--at", "at", default=None, help="Roll the fixtures' dates to this day (YYYY-MM-DD); default today.")
@click.option("--fixtures", "folder", default=None, help="Fixtures folder (default: ./fhir_fixtures).")
def fixtures_server(host: str, port: int, at: str | None, folder: str | None) -> None:
    """Serve the fixture patients as a read-only FHIR R4 endpoint (sandbox use only, not for production)."""
    from werkzeug.serving import run_simple  # noqa: PLC0415

    from cds_service.fixtures import noon  # noqa: PLC0415
    from cds_service.sandbox.fhir_server import create_fixtures_server  # noqa: PLC0415

    configure_logging("INFO")
    app = create_fixtures_server(folder, noon(at))
    click.echo(f"fixtures FHIR server (sandbox use only) on http://{host}:{port}", err=True)
    run_simple(host, port, app, threaded=True)


@main.command()
@click.argument("fixture", required=False)
@click.option("--hook", default=None, type=click.Choice(["patient-view", "order-select", "order-sign"]),
              help="The hook to call (default: the fixture's own hook).")
@click.option("--order", default=None, help="order-select: the draft order to select (its id); default: the "
              "fixture's selection, else every draft order.")
@click.option("--at", "at", default=None, help="Evaluation date (YYYY-MM-DD); the fixture is date-rolled to it. "
              "Default: today.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw CDS Hooks response.")
@click.option("--all", "run_all", is_flag=True, help="Check every fixture against its expected result.")
@click.option("--fixtures", "folder", default=None, help="Fixtures folder (default: ./fhir_fixtures).")
def simulate(*, fixture: str | None, hook: str | None, order: str | None, at: str | None, as_json: bool,
             run_all: bool, folder: str | None) -> None:
    """Run a hook against a fixture patient through the real HTTP app and print the cards a clinician would see."""
    from cds_service.simulate import run_all_fixtures, simulate_fixture  # noqa: PLC0415 (command-specific imports)

    if run_all == bool(fixture):
        raise click.UsageError("give a FIXTURE (name or number) or --all")
    if run_all:
        ok = run_all_fixtures(at, folder, echo=click.echo)
        sys.exit(0 if ok else 1)
    try:
        output = simulate_fixture(fixture, hook=hook, at=at, folder=folder, as_json=as_json,  # type: ignore[arg-type]
                                  order=order)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(output)


if __name__ == "__main__":
    sys.exit(main())
