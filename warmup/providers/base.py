"""The one small interface every WhatsApp provider client implements, and the values it returns.

Workers never see HTTP: a send comes back as a `SendResult` whose `action` tells them what to do next
(see the "Provider error actions" table in docs/design.md and `warmup.providers.errors` for the mapping).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from warmup.core.domain import Reading


class OutcomeAction(StrEnum):
    """What the caller does with the outcome of one provider call."""

    OK = "ok"  # accepted by the provider: the message counts as sent
    RETRY = "retry"  # surely NOT sent (refused, or never reached the server): same message again later
    SKIP_RECIPIENT = "skip_recipient"  # this recipient cannot receive: message failed, recipient invalid
    FAIL = "fail"  # this message can never succeed as built (our bug, too large): failed, no retry
    THROTTLE = "throttle"  # not sent, and a risk signal: cut today's remaining quota
    STOP_NUMBER = "stop_number"  # the number cannot or must not send: auto-pause, an admin resumes
    UNKNOWN = "unknown"  # AMBIGUOUS: the message may have gone out; never re-send it automatically


# How much an action restricts the number, for combining several signals (health = worst of them).
SEVERITY: dict[OutcomeAction, int] = {
    OutcomeAction.OK: 0,
    OutcomeAction.RETRY: 1,
    OutcomeAction.UNKNOWN: 2,
    OutcomeAction.FAIL: 3,
    OutcomeAction.SKIP_RECIPIENT: 4,
    OutcomeAction.THROTTLE: 5,
    OutcomeAction.STOP_NUMBER: 6,
}


def worst(*actions: OutcomeAction) -> OutcomeAction:
    """The most restrictive of `actions` (OK when none)."""
    return max(actions, key=SEVERITY.__getitem__, default=OutcomeAction.OK)


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send. `reason` is human-readable and never contains a token."""

    action: OutcomeAction
    provider_message_id: str | None
    reason: str
    retry_after: float | None = None  # seconds to wait before RETRY (server's Retry-After or a hint)
    http_status: int | None = None  # None when no HTTP response arrived
    code: str | None = None  # provider error code (Whapi error.code, Meta error.code), as text

    @property
    def sent(self) -> bool:
        return self.action is OutcomeAction.OK


@dataclass(frozen=True)
class Health:
    """Whether the number can send right now. `status` is the provider's own word(s) for it."""

    action: OutcomeAction
    status: str
    reason: str


@dataclass(frozen=True)
class Inbound:
    """One incoming event: a message someone sent us (`message`) or a delivery status (`status`).

    For `message`, `provider_message_id` is the incoming message's id and `ref_message_id` the id of
    the message it quotes/replies to (if any). For `status`, `provider_message_id` is the id of OUR
    outbound message whose status changed (`status`: sent, delivered, read, failed, ...), and
    `chat_phone` the recipient. Phones are E.164 with a leading `+`; None for groups/unknown.
    """

    kind: Literal["message", "status"]
    provider_message_id: str
    chat_phone: str | None
    from_me: bool
    text: str | None
    timestamp: datetime  # aware, UTC
    status: str | None = None
    ref_message_id: str | None = None
    error: str | None = None  # for a failed status: "code: title" from the provider


class ProviderError(Exception):
    """A read-only provider call (`list_inbound`) failed; `action` says whether to try again later.

    The message is already redacted.
    """

    def __init__(self, action: OutcomeAction, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.action = action
        self.reason = reason
        self.http_status = http_status


@runtime_checkable
class Provider(Protocol):
    """What a worker needs from a WhatsApp API. Implementations are thread-safe for concurrent sends.

    `send_text` and `health` never raise for provider/network trouble (the outcome is in the result);
    `fetch_reading` returns None with the reason in `last_reading_error`; `list_inbound` raises
    `ProviderError`.
    """

    last_reading_error: str | None

    def send_text(self, to: str, body: str, typing_seconds: float = 0.0) -> SendResult: ...

    def health(self) -> Health: ...

    def fetch_reading(self, today: date) -> Reading | None: ...

    def list_inbound(self, since: datetime) -> list[Inbound]: ...

    def close(self) -> None: ...
