"""Provider signals: where a Whapi number's risk meter is, Meta's readings, and failed meter reads.

`numbers.meter_url`: the risk meter of a Whapi number (None: the published `tools.whapi.cloud` one,
whatever the messaging base URL). `numbers.portfolio`: the Meta business portfolio a Cloud API number
shares its messaging limit with; `portfolios` (its tier when set by hand) and `portfolio_sends` (the
business-initiated sends its limit counts, one row per claim). `readings` gain what Meta says about a
Cloud API number (`quality`, `status`, `tier`) and `meter_error`: the provider's meter failed and the
reading stored is what was used instead, so `why` can say so. `outbound_messages.template`: the
approved template a Cloud API message goes out as when its recipient is outside the 24 h
customer-service window.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "portfolios",
        sa.Column("name", _text(64), nullable=False),
        sa.Column("tier", _text(24), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "portfolio_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portfolio", _text(64), nullable=False),
        sa.Column("recipient", _text(20), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["outbound_messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_portfolio_sends_counted", "portfolio_sends", ["portfolio", "counted_at"])
    op.create_index(
        "ix_portfolio_sends_recipient", "portfolio_sends", ["portfolio", "recipient", "counted_at"]
    )
    with op.batch_alter_table("numbers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meter_url", _text(255), nullable=True))
        batch_op.add_column(sa.Column("portfolio", _text(64), nullable=True))
    op.create_index("ix_numbers_portfolio", "numbers", ["portfolio"])
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quality", _text(16), nullable=True))
        batch_op.add_column(sa.Column("status", _text(16), nullable=True))
        batch_op.add_column(sa.Column("tier", _text(24), nullable=True))
        batch_op.add_column(sa.Column("meter_error", _text(300), nullable=True))
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("template", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("template")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_column("meter_error")
        batch_op.drop_column("tier")
        batch_op.drop_column("status")
        batch_op.drop_column("quality")
    op.drop_index("ix_numbers_portfolio", table_name="numbers")
    with op.batch_alter_table("numbers", schema=None) as batch_op:
        batch_op.drop_column("portfolio")
        batch_op.drop_column("meter_url")
    op.drop_index("ix_portfolio_sends_recipient", table_name="portfolio_sends")
    op.drop_index("ix_portfolio_sends_counted", table_name="portfolio_sends")
    op.drop_table("portfolio_sends")
    op.drop_table("portfolios")
