"""Tables of the service's database (SQLAlchemy 2 declarative). The schema is changed only by Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, MetaData, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so migrations behave the same on SQLite and PostgreSQL.
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
          "pk": "pk_%(table_name)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SeenToken(Base):
    """A client JWT already accepted (`iss`, `jti`), kept until it expires, so a replay is refused (S9)."""

    __tablename__ = "seen_token"

    iss: Mapped[str] = mapped_column(String(512), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class IssuedCard(Base):
    """A card the service returned: the ledger that feedback and analytics refer to. No clear patient identifiers:
    the patient is a keyed hash (HMAC), so cards of one patient can be grouped but not traced back without the key.

    Written on every hook call that returns cards: an index here is a b-tree insert per card, so there is one only
    where a query reads it (`issued_at`, the report's `--since`; migration 0003)."""

    __tablename__ = "issued_card"

    card_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_type: Mapped[str] = mapped_column(String(64))
    service_id: Mapped[str] = mapped_column(String(128))
    hook: Mapped[str] = mapped_column(String(32))
    hook_instance: Mapped[str] = mapped_column(String(255))
    knowledge_version: Mapped[str] = mapped_column(String(64))
    patient_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(16), default="ehr", server_default="ehr")
    """Where the call came from (ledger.CALL_SOURCES): the report counts EHR calls unless asked (migration 0004)."""
    user_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The user (keyed hash) and a digest of what the card said: the report counts the same card shown to the same user
    for the same patient again within a short window as one presentation (migration 0005; null before it)."""
    silent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A card of a silent knowledge version: recorded, never returned, never in the acceptance report (0006)."""


class SilentCall(Base):
    """One call evaluated under both the live and a silent knowledge version (cds_service/silent.py): which card types
    each gave, space-separated in response order. No patient or user: the report counts calls and card types."""

    __tablename__ = "silent_call"

    call_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(128))
    hook: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    evaluated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    live_version: Mapped[str] = mapped_column(String(64))
    silent_version: Mapped[str] = mapped_column(String(64))
    live_card_types: Mapped[str] = mapped_column(String(1024))
    silent_card_types: Mapped[str] = mapped_column(String(1024))


class IssuedSuggestion(Base):
    """A suggestion of an issued card, so accepted suggestions can be named in the report."""

    __tablename__ = "issued_suggestion"

    suggestion_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_uuid: Mapped[str] = mapped_column(ForeignKey("issued_card.card_uuid"))
    label: Mapped[str] = mapped_column(String(255))


class Feedback(Base):
    """One feedback item (CDS Hooks 2.0 F2-F7). `dedupe_key` makes the same feedback sent twice one record. The user
    comment itself is not stored (free text may hold PHI); only that there was one."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    card_uuid: Mapped[str] = mapped_column(String(36), index=True)
    service_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_suggestions: Mapped[str] = mapped_column(Text, default="[]")
    override_system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    override_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    override_display: Mapped[str | None] = mapped_column(String(255), nullable=True)
    has_comment: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
