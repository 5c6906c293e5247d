"""oauth connect links: one-time, short-lived links to start the Calendly OAuth flow

Revision ID: 0003_oauth_connect
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_oauth_connect"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_connect_links",
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("replace", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("nonce_hash", name=op.f("pk_oauth_connect_links")),
    )


def downgrade() -> None:
    op.drop_table("oauth_connect_links")
