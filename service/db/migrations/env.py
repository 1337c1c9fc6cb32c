"""Alembic's environment: the connection comes from ``service.db.schema`` (the URL of the config)."""

from __future__ import annotations

from alembic import context

from service.db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
