"""tombstones of forgotten people and the last projection pushed per contact

Revision ID: 0004_ledger
Revises: 0003_oauth_connect
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_ledger"
down_revision = "0003_oauth_connect"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tombstones",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_tombstones")),
    )
    op.create_table(
        "pushed_projections",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("list_ids", sa.JSON(), nullable=False),
        sa.Column("projection_hash", sa.String(length=64), nullable=False),
        sa.Column("mapping_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_pushed_projections")),
    )
    op.create_index(
        op.f("ix_pushed_projections_mapping_fingerprint"),
        "pushed_projections",
        ["mapping_fingerprint"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_pushed_projections_mapping_fingerprint"), table_name="pushed_projections"
    )
    op.drop_table("pushed_projections")
    op.drop_table("tombstones")
