"""Feedback keeps the finest code given, who sent it and its review; shared texts of recent
predictions; rolled-up prediction counts for /stats (filled from the rows already logged).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite can add these columns in place (nullable, or NOT NULL with a default).
    op.add_column("feedback", sa.Column("code", sa.Text))
    op.add_column("feedback", sa.Column("sender", sa.Text))
    op.add_column("feedback", sa.Column("status", sa.Text, nullable=False, server_default="accepted"))
    op.add_column("feedback", sa.Column("reviewed_by", sa.Text))
    op.add_column("feedback", sa.Column("reviewed_at", sa.Text))
    op.create_index("feedback_status", "feedback", ["status"])

    op.create_table(
        "prediction_texts",
        sa.Column("prediction_id", sa.Text, primary_key=True),
        sa.Column("time", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("prediction_texts_time", "prediction_texts", ["time"])
    op.create_table(
        "prediction_totals",
        sa.Column("label", sa.Text, primary_key=True),
        sa.Column("bin", sa.Integer, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("needs_review", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "prediction_buckets",
        sa.Column("width", sa.Text, primary_key=True),
        sa.Column("start", sa.Text, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )

    # Roll up what earlier releases logged. Confidence deciles: SQLite's CAST truncates, PostgreSQL's rounds.
    if op.get_bind().dialect.name == "sqlite":
        decile = "MIN(CAST(confidence * 10 AS INTEGER), 9)"
    else:
        decile = "LEAST(CAST(FLOOR(confidence * 10) AS INTEGER), 9)"
    op.execute(
        "INSERT INTO prediction_totals (label, bin, count, needs_review)"
        f" SELECT label, {decile}, COUNT(*), SUM(needs_review) FROM predictions GROUP BY 1, 2"
    )
    for width, chars in (("hour", 13), ("minute", 16)):
        op.execute(
            f"INSERT INTO prediction_buckets (width, start, count)"
            f" SELECT '{width}', substr(time, 1, {chars}), COUNT(*) FROM predictions GROUP BY 2"
        )


def downgrade() -> None:
    op.drop_table("prediction_buckets")
    op.drop_table("prediction_totals")
    op.drop_table("prediction_texts")
    op.drop_index("feedback_status", "feedback")
    for column in ("reviewed_at", "reviewed_by", "status", "sender", "code"):
        op.drop_column("feedback", column)
