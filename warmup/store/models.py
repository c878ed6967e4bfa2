"""The tables. Schema changes go through Alembic migrations (`warmup/store/migrations`), never `create_all`.

Every timestamp is an aware UTC datetime on both databases (`UTCDateTime`); every "day" is the number's
local calendar day (`local_date`), because quotas reset at local midnight. States are short strings
guarded by CHECK constraints, so a bad write fails in the database too, not only in Python.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import JSON, Column, Field, SQLModel


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every database: SQLite (no time zones) stores naive UTC text.

    Naive datetimes are refused: a naive value is ambiguous, and mixing them silently breaks the
    comparisons every query here relies on (`scheduled_at <= now`).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Provider(StrEnum):
    WHAPI = "whapi"
    CLOUD_API = "cloud_api"
    SIMULATOR = "simulator"


class NumberStatus(StrEnum):
    """Lifecycle of a number (its ramp position is `plan_day`, see `warmup.core.domain.NumberState`)."""

    ACTIVE = "active"
    PAUSED = "paused"
    RETIRED = "retired"


class MessageKind(StrEnum):
    OPENER = "opener"  # first message of a conversation (peer or contact)
    REPLY = "reply"  # answer to a contact who wrote
    PEER_REPLY = "peer_reply"  # a fleet peer answering another peer


class MessageState(StrEnum):
    """planned -> queued -> sending -> sent | failed | unknown; planned/queued -> skipped.

    `sending` may also go back to `queued` (retry later) or to `skipped` (nothing went out).
    """

    PLANNED = "planned"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


TERMINAL_STATES = frozenset(
    {MessageState.SENT, MessageState.FAILED, MessageState.SKIPPED, MessageState.UNKNOWN}
)
COUNTED_STATES = frozenset({MessageState.SENT, MessageState.SENDING, MessageState.UNKNOWN})


class RecipientKind(StrEnum):
    PEER = "peer"
    CONTACT = "contact"


class InboundKind(StrEnum):
    MESSAGE = "message"
    STATUS = "status"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _utc(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Number(SQLModel, table=True):
    """One WhatsApp sender. `token_ref` is the NAME of an environment variable, never the token itself.

    The ramp columns (`plan_day`, `advance_pending`, `last_volume`, `paused_volume`, `resumed_on`) are
    `warmup.core.domain.NumberState`, kept as `warmup.core.ramp.state_after` says (see `days.plan_day`).
    """

    __tablename__ = "numbers"
    __table_args__ = (
        sa.CheckConstraint(_in("provider", Provider), name="ck_numbers_provider"),
        sa.CheckConstraint(_in("state", NumberStatus), name="ck_numbers_state"),
        sa.CheckConstraint("plan_day >= 1", name="ck_numbers_plan_day"),
        sa.CheckConstraint("last_volume >= 0", name="ck_numbers_last_volume"),
    )

    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(max_length=20, unique=True)
    provider: str = Field(max_length=16)
    token_ref: str = Field(max_length=64)
    base_url: str | None = Field(default=None, max_length=255)
    phone_number_id: str | None = Field(default=None, max_length=64)
    meter_url: str | None = Field(default=None, max_length=255)  # Whapi risk meter; None: the published one
    portfolio: str | None = Field(default=None, max_length=64, index=True)  # Meta portfolio (Cloud API)
    plan_name: str = Field(max_length=100)
    plan_path: str = Field(max_length=500)
    timezone: str = Field(max_length=64)
    pending_timezone: str | None = Field(default=None, max_length=64)  # takes effect at `timezone_from`
    timezone_from: datetime | None = _utc()  # the end of the local day the change was made in
    registered: date | None = None
    state: str = Field(default=NumberStatus.ACTIVE.value, max_length=16)
    paused_reason: str | None = Field(default=None, max_length=500)
    paused_until: datetime | None = _utc()
    paused_at: datetime | None = _utc()
    paused_volume: int | None = None
    resumed_on: date | None = None
    plan_day: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    advance_pending: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    last_volume: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = _utc(nullable=False)
    updated_at: datetime = _utc(nullable=False)


class ReadingRow(SQLModel, table=True):
    """One risk-meter result (each factor 1..3) for one number and local day."""

    __tablename__ = "readings"
    __table_args__ = (
        sa.CheckConstraint(
            " AND ".join(
                f"{f} BETWEEN 1 AND 3" for f in ("overall", "lifetime", "response_rate", "contacts")
            ),
            name="ck_readings_factors",
        ),
        sa.Index("ix_readings_number_taken", "number_id", "taken_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number_id: int = Field(foreign_key="numbers.id")
    local_date: date
    overall: int
    lifetime: int
    response_rate: int
    contacts: int
    source: str = Field(max_length=16)
    taken_at: datetime = _utc(nullable=False)
    quality: str | None = Field(default=None, max_length=16)  # Meta quality rating: green | yellow | red
    status: str | None = Field(default=None, max_length=16)  # Meta number status: connected | flagged | ...
    tier: str | None = Field(default=None, max_length=24)  # Meta messaging limit, e.g. TIER_2K
    meter_error: str | None = Field(default=None, max_length=300)  # the provider meter failed: why


class DayPlan(SQLModel, table=True):
    """The decision of one number for one local day, and `used`: the slots claimed against `quota`.

    `used` only changes through `claims.claim` (+1 when under quota) and the paths that give a slot back
    because nothing went out (`record_skipped`, `release_for_retry`); the CHECK keeps it in 0..quota.
    """

    __tablename__ = "day_plans"
    __table_args__ = (
        sa.UniqueConstraint("number_id", "local_date", name="uq_day_plans_number_date"),
        sa.Index("uq_day_plans_id_number", "id", "number_id", unique=True),  # messages' foreign key
        sa.CheckConstraint("quota >= 0 AND used >= 0 AND used <= quota", name="ck_day_plans_used"),
        sa.CheckConstraint("plan_day >= 1 AND next_plan_day >= 1", name="ck_day_plans_plan_day"),
        sa.CheckConstraint("cut >= 0", name="ck_day_plans_cut"),
        sa.CheckConstraint("quota_cut >= 0 AND quota_cut <= cut", name="ck_day_plans_quota_cut"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number_id: int = Field(foreign_key="numbers.id")
    local_date: date
    plan_day: int
    next_plan_day: int
    action: str = Field(max_length=16)
    quota: int
    plan_volume: int
    max_new_contacts: int
    reasons: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    used: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    cut: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    cut_reason: str | None = Field(default=None, max_length=500)
    quota_cut: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # of `cut`: lowered later
    # the day's pacing, fixed when it is planned (migration 0004): the claim enforces them
    gap_seconds: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})  # min gap between sends
    per_hour: int | None = None  # at most this many claims in any 60 minutes (None: no cap)
    windows: list[list[str]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # UTC spans
    created_at: datetime = _utc(nullable=False)


class Pace(SQLModel, table=True):
    """Where a number's sending stands, for the claim's pacing rule: the send in flight (at most one),
    when the last one ended, and the claims of the last hour. Written only by a claim and by the paths
    that end a claim (`warmup.store.outcomes`), under this row's lock."""

    __tablename__ = "paces"

    number_id: int = Field(foreign_key="numbers.id", primary_key=True)
    busy_id: int | None = None  # the message in flight (claimed, outcome not recorded yet)
    busy_since: datetime | None = _utc()  # when the send in flight (or, once free, the last one) started
    free_at: datetime | None = _utc()  # when the last send's outcome was recorded
    recent: list[float] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # epoch s


class OutboundMessage(SQLModel, table=True):
    """One planned send and where it stands (see `MessageState`)."""

    __tablename__ = "outbound_messages"
    __table_args__ = (
        sa.CheckConstraint(_in("state", MessageState), name="ck_outbound_state"),
        sa.CheckConstraint(_in("kind", MessageKind), name="ck_outbound_kind"),
        sa.CheckConstraint("attempts >= 0", name="ck_outbound_attempts"),
        sa.CheckConstraint("typing_seconds >= 0", name="ck_outbound_typing"),
        sa.Index("ix_outbound_state_scheduled", "state", "scheduled_at"),
        sa.Index("ix_outbound_number_day_state", "number_id", "local_date", "state"),
        # one look-up per row checks both the day plan and that it is this number's (migration 0003)
        sa.ForeignKeyConstraint(
            ["day_plan_id", "number_id"],
            ["day_plans.id", "day_plans.number_id"],
            name="fk_outbound_day_plan_number",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    number_id: int
    day_plan_id: int = Field(index=True)
    local_date: date
    recipient: str = Field(max_length=20)
    kind: str = Field(max_length=16)
    text: str = Field(sa_column=Column(sa.Text, nullable=False))
    typing_seconds: float = 0.0
    scheduled_at: datetime = _utc(nullable=False)
    not_before: datetime | None = _utc()
    window_end: datetime | None = _utc()  # end of the send window it was planned in: no claim from then on
    state: str = Field(default=MessageState.PLANNED.value, max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    cause: str | None = Field(default=None, max_length=32)  # why it was skipped (`SkipCause`)
    provider_message_id: str | None = Field(default=None, max_length=128)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    claimed_by: str | None = Field(default=None, max_length=128)
    claimed_at: datetime | None = _utc()
    queued_at: datetime | None = _utc()
    finished_at: datetime | None = _utc()
    in_reply_to: int | None = Field(default=None, foreign_key="outbound_messages.id")
    # Cloud API: the approved template {name, language, parameters} this message went out as, its
    # recipient being outside the 24 h customer-service window (None: sent as `text`, or not sent)
    template: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _utc(nullable=False)


class InboundMessage(SQLModel, table=True):
    """A message or delivery status received for a number; stored once per provider event.

    For `message` rows `provider_message_id` is the message's id and `status` is empty; for `status`
    rows it is the id of the outbound message the status is about, and `status` says which one
    (delivered, read, ...). The unique key makes re-ingesting a page of events a no-op.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        sa.UniqueConstraint(
            "number_id", "kind", "provider_message_id", "status", name="uq_inbound_number_event"
        ),
        sa.CheckConstraint(_in("kind", InboundKind), name="ck_inbound_kind"),
        sa.Index("ix_inbound_number_received", "number_id", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number_id: int = Field(foreign_key="numbers.id")
    provider_message_id: str = Field(max_length=128)
    kind: str = Field(max_length=16)
    chat_phone: str | None = Field(default=None, max_length=32)
    from_me: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    text: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    status: str = Field(default="", max_length=32, sa_column_kwargs={"server_default": ""})
    ref_message_id: str | None = Field(default=None, max_length=128)
    received_at: datetime = _utc(nullable=False)


class Recipient(SQLModel, table=True):
    """Someone a number writes to: a fleet peer or a contact, with what we last said and how it went."""

    __tablename__ = "recipients"
    __table_args__ = (
        sa.UniqueConstraint("number_id", "phone", name="uq_recipients_number_phone"),
        sa.CheckConstraint(_in("kind", RecipientKind), name="ck_recipients_kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number_id: int = Field(foreign_key="numbers.id")
    phone: str = Field(max_length=20)
    kind: str = Field(max_length=16)
    name: str | None = Field(default=None, max_length=200)
    first_contacted_on: date | None = None
    last_text: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    replied: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    invalid: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    invalid_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = _utc(nullable=False)
    updated_at: datetime = _utc(nullable=False)


class AuditLog(SQLModel, table=True):
    """Who did what to which number, and why (pause, resume, auto-pause, apply, ...)."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _utc(nullable=False, index=True)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64)
    number_id: int | None = Field(default=None, foreign_key="numbers.id", index=True)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Portfolio(SQLModel, table=True):
    """A Meta business portfolio: its Cloud API numbers (`Number.portfolio`) share one messaging limit
    of unique business-initiated recipients in a moving 24 h (`warmup.core.portfolio`). Written by the
    fleet sync; a claim of one of its numbers' messages locks the row (migration 0005)."""

    __tablename__ = "portfolios"

    name: str = Field(primary_key=True, max_length=64)
    tier: str | None = Field(default=None, max_length=24)  # set by hand (None: Meta's, read on readings)
    created_at: datetime = _utc(nullable=False)
    updated_at: datetime = _utc(nullable=False)


class PortfolioSend(SQLModel, table=True):
    """One business-initiated send of a portfolio's number, counted by the claim that took it: its
    recipient counts against the portfolio's limit until 24 h after `counted_at`. Deleted when the
    send did not go out (`warmup.store.portfolios.release`); kept for `unknown` (migration 0005)."""

    __tablename__ = "portfolio_sends"
    __table_args__ = (
        sa.Index("ix_portfolio_sends_counted", "portfolio", "counted_at"),
        sa.Index("ix_portfolio_sends_recipient", "portfolio", "recipient", "counted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    portfolio: str = Field(max_length=64)
    recipient: str = Field(max_length=20)
    message_id: int = Field(foreign_key="outbound_messages.id", unique=True)
    counted_at: datetime = _utc(nullable=False)


metadata = SQLModel.metadata
"""All tables above; what Alembic's env.py compares migrations against."""
