"""the signing key that verified each event and the Brevo calls made for it (``trace``)

Revision ID: 0005_delivery_trace
Revises: 0004_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_delivery_trace"
down_revision = "0004_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite cannot drop a column in place (the downgrade); on Postgres it is plain ALTERs.
    with op.batch_alter_table("processed_events") as batch:
        batch.add_column(sa.Column("signature_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("brevo_calls", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_column("brevo_calls")
        batch.drop_column("signature_key")
