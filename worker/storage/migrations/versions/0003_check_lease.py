"""checks.lease_until: a running check is leased so a redelivered task does not run it twice

Revision ID: 0003_check_lease
Revises: 0002_notifications
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_check_lease"
down_revision = "0002_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checks") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checks") as batch:
        batch.drop_column("lease_until")
