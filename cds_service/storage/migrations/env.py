"""Alembic environment: migrations run on the engine the service passes in (no alembic.ini, no URL in a file)."""

from __future__ import annotations

from alembic import context

from cds_service.storage.models import Base

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    context.run_migrations()
