"""URL index (each URL's last bytes and validators, for conditional GETs and URL-alone answers) and
the host counters that earn and lose URL trust.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "urls",
        sa.Column("url_key", sa.String(length=66), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("content_key", sa.String(length=66), nullable=False),
        sa.Column("header_key", sa.String(length=66), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.String(length=64), nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_checked", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["content_key"], ["images.content_key"]),
        sa.PrimaryKeyConstraint("url_key"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_urls_host", "urls", ["host"])
    op.create_index("ix_urls_content_key", "urls", ["content_key"])
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("url_checks", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("url_changes", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("url_trusted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("url_trusted_at")
        batch.drop_column("url_changes")
        batch.drop_column("url_checks")
    op.drop_index("ix_urls_content_key", table_name="urls")
    op.drop_index("ix_urls_host", table_name="urls")
    op.drop_table("urls")
