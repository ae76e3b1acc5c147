"""Alembic environment: migrations run on the connection that :meth:`patentclf.store.database.Store.upgrade`
passes in (already inside its transaction, under its lock), never on a URL of their own."""

from alembic import context

from patentclf.store.database import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through patentclf.store.database.Store.upgrade(), which passes the connection")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
