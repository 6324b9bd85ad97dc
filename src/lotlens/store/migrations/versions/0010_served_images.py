"""watch figures count each image once per advertiser and day: served_images replaces answer_counts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:20:00.000000

answer_counts added one per answer, so an image asked three times a day counted three times. Its
rows cannot be taken apart into images, so they are dropped, not converted: the watch starts again
from the day of this migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served_images",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("advertiser", sa.String(length=128), nullable=False),
        sa.Column("content_key", sa.String(length=66), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("day", "advertiser", "content_key"),
    )
    op.drop_table("answer_counts")


def downgrade() -> None:
    op.create_table(
        "answer_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("advertiser", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "advertiser", "model_version", "type", "source"),
    )
    op.execute(
        "INSERT INTO answer_counts (day, advertiser, model_version, type, source, n) "
        "SELECT day, advertiser, model_version, type, source, COUNT(*) FROM served_images "
        "GROUP BY day, advertiser, model_version, type, source"
    )
    op.drop_table("served_images")
