"""doctor_runs: the results of ``constancias doctor`` (the command and the nightly schedule's
run before each re-check), so the web page can show the last one and the schedule can tell a
new failure from one the operator was already told about

Revision ID: 0006_doctor_runs
Revises: 0005_web_sessions
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_doctor_runs"
down_revision = "0005_web_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "doctor_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("failed", sa.Text(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("doctor_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_doctor_runs_ran_at"), ["ran_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("doctor_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doctor_runs_ran_at"))
    op.drop_table("doctor_runs")
