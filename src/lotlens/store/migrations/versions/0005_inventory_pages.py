"""inventory pages: how each sighting was last answered, and the URLs skipped on the latest scrape

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 06:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "skips",
        sa.Column("advertiser", sa.String(length=128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("vehicle_id", sa.String(length=128), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("advertiser", "url"),
    )
    op.add_column("sightings", sa.Column("source", sa.String(length=8), nullable=True))
    # The inventory page lists an advertiser's images newest first.
    op.create_index("ix_sightings_advertiser_last_seen", "sightings", ["advertiser", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_sightings_advertiser_last_seen", table_name="sightings")
    op.drop_column("sightings", "source")
    op.drop_table("skips")
