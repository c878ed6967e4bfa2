"""Send windows and time zone changes.

Outbound messages remember the end of the send window they were planned in (`window_end`).

A claim at or after it is refused ("window closed"), so a late dispatch can never send outside the
plan's windows. Nullable: rows planned before this revision (and planless sends) have no window.

Numbers get `pending_timezone` / `timezone_from`: a time zone changed in the middle of a planned local
day takes effect when that day ends, so the change never opens a second, overlapping day with a fresh
quota.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("numbers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pending_timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("timezone_from", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("window_end", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("window_end")
    with op.batch_alter_table("numbers", schema=None) as batch_op:
        batch_op.drop_column("timezone_from")
        batch_op.drop_column("pending_timezone")
