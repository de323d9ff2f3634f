"""`cds-service`: the command line of the service (serve; later issues add simulate, fixtures-server, reports)."""

from __future__ import annotations

import sys

import click

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
    from cds_service.server import GunicornServer  # noqa: PLC0415 (gunicorn is needed by this command only)

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(settings.log_level)
    server = GunicornServer(
        settings,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers if workers is not None and workers > 0 else settings.worker_count(),
    )
    click.echo(f"cds-service ({settings.profile} profile) on http://{host or settings.host}:{port or settings.port}",
               err=True)
    server.run()


if __name__ == "__main__":
    sys.exit(main())
