"""The predictions log keeps what the review queue needs: each prediction's ``review_score`` (higher:
a person should look first; ``inference.review.queue_score``) and ``review``, a JSON object with the
review reasons, whether the nearest patents disagree, the top sections and the best code per level.

Rows logged before stay as they are (both NULL): the queue lists them after every scored row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: added in place by SQLite and PostgreSQL alike, without rewriting the rows.
    op.add_column("predictions", sa.Column("review_score", sa.Float))
    op.add_column("predictions", sa.Column("review", sa.Text))
    op.create_index("predictions_review_score", "predictions", ["review_score"])


def downgrade() -> None:
    op.drop_index("predictions_review_score", "predictions")
    op.drop_column("predictions", "review")
    op.drop_column("predictions", "review_score")
