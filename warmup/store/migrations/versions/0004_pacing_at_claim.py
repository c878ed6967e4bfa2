"""Pacing enforced at the claim, and skips with a cause.

`paces`: one row per number, what the claim's pacing rule reads and writes under the row's lock: the
send in flight, when the last one ended, the claims of the last hour. `day_plans` keep the day's pacing
(`gap_seconds`, `per_hour`) and send windows (`windows`, UTC spans) as planned, so the claim needs no
plan file; `quota_cut` is the part of `cut` made after planning (a throttle), so the day's account
tells what planning could not fit from what was taken away later. `outbound_messages.cause` says why
a skipped message was skipped (`SkipCause`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paces",
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("busy_id", sa.Integer(), nullable=True),
        sa.Column("busy_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("free_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recent", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["number_id"], ["numbers.id"]),
        sa.PrimaryKeyConstraint("number_id"),
    )
    op.execute("INSERT INTO paces (number_id, recent) SELECT id, '[]' FROM numbers")
    with op.batch_alter_table("day_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_cut", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("gap_seconds", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("per_hour", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("windows", sa.JSON(), nullable=True))
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cause", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("cause")
    with op.batch_alter_table("day_plans", schema=None) as batch_op:
        batch_op.drop_column("windows")
        batch_op.drop_column("per_hour")
        batch_op.drop_column("gap_seconds")
        batch_op.drop_column("quota_cut")
    op.drop_table("paces")
