"""Create the SQLAlchemy engine for the configured database URL.

SQLite is the embedded default (a file in the instance folder) and runs in WAL mode so the gunicorn workers can
read while one writes; PostgreSQL is used when `CDS_DATABASE_URL` names it. Schema and migrations arrive with the
feedback ledger; this module only connects.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url, text


def create_database_engine(url: str) -> Engine:
    """An engine for `url`; for SQLite files, the parent folder is created and WAL journaling enabled."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # SQLite's recommended pairing with WAL: a commit no longer waits for fsync (3 ms of each ledger batch,
            # and of each request's replay-store insert, on these machines). The database stays consistent after any
            # crash; a power loss may undo the last commits (cards issued, tokens seen in the last moments).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def ping(engine: Engine) -> None:
    """Raise if the database cannot be reached (used by /readyz)."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def describe(engine: Engine) -> str:
    """The database backend and URL with any password hidden, for logs and readiness answers."""
    return engine.url.render_as_string(hide_password=True)
