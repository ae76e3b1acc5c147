"""Feedback may name the user's own tags of a patent (``patentclf tags fit``): a JSON list of
``{"set", "name"}`` (NULL in rows without tags).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: added in place by SQLite and PostgreSQL alike, without rewriting the rows.
    op.add_column("feedback", sa.Column("tags", sa.Text))


def downgrade() -> None:
    op.drop_column("feedback", "tags")
