"""Create the SQLAlchemy engine for the configured database URL, and tell an unreachable database from a bad row.

SQLite is the embedded default (a file in the instance folder) and runs in WAL mode so the gunicorn workers can
read while one writes; PostgreSQL is used when `CDS_DATABASE_URL` names it. SQL parameters (hook instances, patient
hashes, feedback) never appear in an error's text or a log line at any level (`hide_parameters`). Every wait on the
database is bounded by `timeout` (connect, pool checkout, SQLite's lock wait), so an unreachable database costs a
503, never a hang.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

DEFAULT_TIMEOUT_SECONDS = 3.0


def create_database_engine(url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Engine:
    """An engine for `url`; for SQLite files, the parent folder is created and WAL journaling enabled."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        busy_ms = int(timeout * 1000)
        engine = create_engine(url, connect_args={"timeout": timeout}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # SQLite's recommended pairing with WAL: a commit no longer waits for fsync (most of each ledger batch,
            # and of each request's replay-store insert: bench/DECISIONS.md). The database stays consistent after any
            # crash; a power loss may undo the last commits (cards issued, tokens seen in the last moments).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.close()

        return engine
    # libpq's connect_timeout is whole seconds (at least 2 are honoured); pool_timeout bounds the wait for a
    # connection when every pooled one is busy.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=timeout,
                         connect_args={"connect_timeout": max(2, round(timeout))}, hide_parameters=True)


def is_unavailable(error: BaseException) -> bool:
    """True when `error` says the database cannot be reached or used now (down, unreachable, locked, disk gone), as
    opposed to a statement or a row it refuses: the first is retried later, the second is the row's own fault."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def is_row_fault(error: BaseException) -> bool:
    """True when the database refused a row for what it holds (NUL in text, a value too long, a constraint), or its
    values could not even be sent: retrying cannot help, and the row must be set aside so the others land. Anything
    else (a missing table, an unknown error) is not the row's fault and is retried, never set aside."""
    if isinstance(error, DataError | IntegrityError):
        return True
    if isinstance(error, StatementError) and not isinstance(error, DBAPIError):
        return isinstance(error.orig, ValueError | TypeError)  # a bind processor refused the value
    return isinstance(error, ValueError | TypeError)  # e.g. a driver's UnicodeEncodeError


def describe(engine: Engine) -> str:
    """The database backend and URL with any password hidden, for logs and readiness answers."""
    return engine.url.render_as_string(hide_password=True)
