"""The schema as it was before versions: feedback and the predictions log.

Files written by earlier releases already hold these tables (created with CREATE TABLE IF NOT EXISTS);
they are adopted as they are.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "feedback" not in existing:
        op.create_table(
            "feedback",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("time", sa.Text, nullable=False),
            sa.Column("prediction_id", sa.Text),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("label", sa.Text, nullable=False),
            sa.Column("predicted_label", sa.Text),
            sa.Column("agreed", sa.Integer),
            sa.Column("comment", sa.Text),
            sa.Column("model_version", sa.Text),
            sa.Column("source", sa.Text, nullable=False, server_default="api"),
            sqlite_autoincrement=True,
        )
        op.create_index("feedback_prediction_id", "feedback", ["prediction_id"])
    if "predictions" not in existing:
        op.create_table(
            "predictions",
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("time", sa.Text, nullable=False),
            sa.Column("model_version", sa.Text, nullable=False),
            sa.Column("label", sa.Text, nullable=False),
            sa.Column("confidence", sa.Float, nullable=False),
            sa.Column("latency_ms", sa.Float, nullable=False),
            sa.Column("needs_review", sa.Integer, nullable=False),
            sa.Column("text", sa.Text),
        )
        op.create_index("predictions_time", "predictions", ["time"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("feedback")
