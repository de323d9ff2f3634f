"""The embedded SQLite database file, watched: deleted or replaced, it is recreated rather than written into the void.

A SQLite connection keeps writing to the file it opened even after that file was deleted (the instance folder
removed, the file replaced by a restore): every commit then lands in an inode nobody can read, and the rows are lost
while the database reports success. The ledger checks the file after each commit it makes; when it changed, the
engine's connections are closed, the schema is migrated into a new file, and the rows are written again from the
spool (the spool is replayed idempotently).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine

from cds_service.storage.migrate import upgrade


class DatabaseFile:
    """The file behind a SQLite engine (nothing to watch for a server database or `:memory:`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        url = engine.url
        database = url.database if url.get_backend_name() == "sqlite" else None
        self.path = Path(database) if database and database != ":memory:" and not database.startswith("file:") \
            else None
        self._identity = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def replaced(self) -> bool:
        """The file the engine's connections write to is no longer the one at the path (deleted or replaced)."""
        return self.path is not None and self._stat() != self._identity

    def recreate(self) -> None:
        """Close every connection to the lost file, then migrate a new one into place."""
        self.engine.dispose()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        upgrade(self.engine)
        self.engine.dispose()  # the migration's connection must not stay in a pool that may cross a fork
        self._identity = self._stat()
