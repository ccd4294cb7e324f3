"""Alembic environment: runs on the connection ``tasks.results_db.engine`` passes in."""

from __future__ import annotations

from alembic import context

from tasks.results_db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
