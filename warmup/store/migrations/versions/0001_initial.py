"""Initial schema: every table of warmup.store.models.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 05:17:57.494702
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("token_ref", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("base_url", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("phone_number_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("plan_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("plan_path", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("registered", sa.Date(), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("paused_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_volume", sa.Integer(), nullable=True),
        sa.Column("resumed_on", sa.Date(), nullable=True),
        sa.Column("plan_day", sa.Integer(), server_default="1", nullable=False),
        sa.Column("advance_pending", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_volume", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("provider IN ('whapi', 'cloud_api', 'simulator')", name="ck_numbers_provider"),
        sa.CheckConstraint("state IN ('active', 'paused', 'retired')", name="ck_numbers_state"),
        sa.CheckConstraint("last_volume >= 0", name="ck_numbers_last_volume"),
        sa.CheckConstraint("plan_day >= 1", name="ck_numbers_plan_day"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phone"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_number_id"), ["number_id"], unique=False)

    op.create_table(
        "day_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("plan_day", sa.Integer(), nullable=False),
        sa.Column("next_plan_day", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("plan_volume", sa.Integer(), nullable=False),
        sa.Column("max_new_contacts", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("used", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cut", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cut_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("cut >= 0", name="ck_day_plans_cut"),
        sa.CheckConstraint("plan_day >= 1 AND next_plan_day >= 1", name="ck_day_plans_plan_day"),
        sa.CheckConstraint("quota >= 0 AND used >= 0 AND used <= quota", name="ck_day_plans_used"),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number_id", "local_date", name="uq_day_plans_number_date"),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("chat_phone", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("from_me", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), server_default="", nullable=False),
        sa.Column("ref_message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('message', 'status')", name="ck_inbound_kind"),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "number_id", "kind", "provider_message_id", "status", name="uq_inbound_number_event"
        ),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_number_received", ["number_id", "received_at"], unique=False)

    op.create_table(
        "readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("overall", sa.Integer(), nullable=False),
        sa.Column("lifetime", sa.Integer(), nullable=False),
        sa.Column("response_rate", sa.Integer(), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "overall BETWEEN 1 AND 3 AND lifetime BETWEEN 1 AND 3"
            " AND response_rate BETWEEN 1 AND 3 AND contacts BETWEEN 1 AND 3",
            name="ck_readings_factors",
        ),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index("ix_readings_number_taken", ["number_id", "taken_at"], unique=False)

    op.create_table(
        "recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("first_contacted_on", sa.Date(), nullable=True),
        sa.Column("last_text", sa.Text(), nullable=True),
        sa.Column("replied", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("invalid", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("invalid_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('peer', 'contact')", name="ck_recipients_kind"),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number_id", "phone", name="uq_recipients_number_phone"),
    )
    op.create_table(
        "outbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("day_plan_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("typing_seconds", sa.Float(), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("provider_message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("in_reply_to", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('opener', 'reply', 'peer_reply')", name="ck_outbound_kind"),
        sa.CheckConstraint(
            "state IN ('planned', 'queued', 'sending', 'sent', 'failed', 'skipped', 'unknown')",
            name="ck_outbound_state",
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_outbound_attempts"),
        sa.CheckConstraint("typing_seconds >= 0", name="ck_outbound_typing"),
        sa.ForeignKeyConstraint(
            ["day_plan_id"],
            ["day_plans.id"],
        ),
        sa.ForeignKeyConstraint(
            ["in_reply_to"],
            ["outbound_messages.id"],
        ),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbound_messages_day_plan_id"), ["day_plan_id"], unique=False)
        batch_op.create_index(
            "ix_outbound_number_day_state", ["number_id", "local_date", "state"], unique=False
        )
        batch_op.create_index("ix_outbound_state_scheduled", ["state", "scheduled_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbound_state_scheduled")
        batch_op.drop_index("ix_outbound_number_day_state")
        batch_op.drop_index(batch_op.f("ix_outbound_messages_day_plan_id"))

    op.drop_table("outbound_messages")
    op.drop_table("recipients")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_number_taken")

    op.drop_table("readings")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_number_received")

    op.drop_table("inbound_messages")
    op.drop_table("day_plans")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_number_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    op.drop_table("numbers")
