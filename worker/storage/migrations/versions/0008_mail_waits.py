"""mail_waits: IMSS checks waiting for an email between their two browser steps (one row per
check: address, when the form was sent, the stage, the claimed link or PDF), and mail_claims:
every message a mailbox watcher took, so that two watchers never both take one

Revision ID: 0008_mail_waits
Revises: 0007_accounts_api
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_mail_waits"
down_revision = "0007_accounts_api"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mail_waits",
        sa.Column("check_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("sent_at", _TS, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("link_tried_at", _TS, nullable=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["check_id"], ["checks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("check_id"),
    )
    with op.batch_alter_table("mail_waits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_waits_address"), ["address"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_waits_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_waits_stage"), ["stage"], unique=False)
    op.create_table(
        "mail_claims",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("check_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("mail_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_claims_claimed_at"), ["claimed_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mail_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_claims_claimed_at"))
    op.drop_table("mail_claims")
    with op.batch_alter_table("mail_waits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_waits_stage"))
        batch_op.drop_index(batch_op.f("ix_mail_waits_batch_id"))
        batch_op.drop_index(batch_op.f("ix_mail_waits_address"))
    op.drop_table("mail_waits")
