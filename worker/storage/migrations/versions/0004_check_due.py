"""checks.due_at: when the broker task of a check is next due (distributed mode), so that a
check nobody will run (its worker died, Redis lost its queue) can be told apart and sent again;
batches.reporting_since: when the report was claimed, so that a dead writer's claim expires

Revision ID: 0004_check_due
Revises: 0003_check_lease
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_check_due"
down_revision = "0003_check_lease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checks") as batch:
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("reporting_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("reporting_since")
    with op.batch_alter_table("checks") as batch:
        batch.drop_column("due_at")
