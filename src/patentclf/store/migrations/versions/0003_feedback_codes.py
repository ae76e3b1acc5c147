"""Feedback keeps every code a correction gives (main code first, down to main groups) as a JSON list.

Rows stored before stay as they are (``codes`` NULL): they read back as their one code.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: added in place by SQLite and PostgreSQL alike, without rewriting the rows.
    op.add_column("feedback", sa.Column("codes", sa.Text))


def downgrade() -> None:
    op.drop_column("feedback", "codes")
