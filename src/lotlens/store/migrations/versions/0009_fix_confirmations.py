"""fixes.confirmation: a "Looks right" on a model's answer is a fix with the same value, marked as a
confirmation (it makes the field a confirmed label for the next dataset, and is not a correction in
the fix-rate figures)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fixes", sa.Column("confirmation", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # plain ALTER (SQLite 3.35+ and PostgreSQL): a batch copy of the table would drop its append-only triggers
    op.execute("ALTER TABLE fixes DROP COLUMN confirmation")
