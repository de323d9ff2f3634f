"""Replay protection: a `jti` is accepted once per issuer until its token expires (CDS Hooks BP, S9).

The store is the service's database, so every worker and every instance sharing it sees the same tokens.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from cds_service.storage.models import SeenToken

# Built once and run with parameters: `insert(...).values(...)` per call made SQLAlchemy build and key a new statement
# every time, about twice this way's cost per authenticated request (bench/DECISIONS.md).
_RECORD = insert(SeenToken)


class ReplayStore:
    def __init__(self, engine: Engine, cleanup_probability: float = 0.01) -> None:
        self.engine = engine
        self.cleanup_probability = cleanup_probability

    def first_use(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record (iss, jti); False when it was already recorded (a replay)."""
        try:
            with self.engine.begin() as connection:
                connection.execute(_RECORD, {"iss": iss, "jti": jti, "expires_at": expires_at})
        except IntegrityError:
            return False
        if random.random() < self.cleanup_probability:  # noqa: S311 (scheduling, not security)
            self.forget_expired()
        return True

    def forget_expired(self, now: datetime | None = None) -> int:
        """Delete entries whose token has expired (they can no longer be replayed)."""
        with self.engine.begin() as connection:
            result = connection.execute(delete(SeenToken).where(SeenToken.expires_at < (now or datetime.now(UTC))))
        return result.rowcount or 0
