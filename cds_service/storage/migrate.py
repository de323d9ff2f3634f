"""Bring the database schema to the newest migration (Alembic), at start-up or with `cds-service db upgrade`.

Several instances (or workers recreating a deleted SQLite file) may start a migration at the same moment; without a
lock two of them both see an empty database and one fails on a unique violation. PostgreSQL migrations therefore run
under a session advisory lock, SQLite ones under an `flock` on a file next to the database; whoever comes second finds
the schema at head and does nothing.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

# pg_advisory_lock key of the schema migration: any fixed 64-bit number, the same in every instance.
MIGRATION_LOCK_KEY = 0x0CD5_2026_0001


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files(__package__).joinpath("migrations")))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration not yet applied (idempotent, and safe to run from several processes at once)."""
    with _migration_lock(engine), engine.connect() as connection:
        command.upgrade(alembic_config(connection), revision)
        connection.commit()


def downgrade(engine: Engine, revision: str) -> None:
    with _migration_lock(engine), engine.connect() as connection:
        command.downgrade(alembic_config(connection), revision)
        connection.commit()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            connection.commit()
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                connection.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def head_revision() -> str | None:
    """The newest migration this build carries."""
    config = Config()
    config.set_main_option("script_location", str(resources.files(__package__).joinpath("migrations")))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 (only for this check)

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
