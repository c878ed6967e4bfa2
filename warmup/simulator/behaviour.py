"""What recipients do with a message: delivery, reading and answering, as seeded future events.

- A recipient that is another registered channel is a **peer**: the message lands in the peer's inbox
  when it is delivered; the peer does not answer by itself (the orchestrator schedules peer answers).
- Any other recipient is a **contact** with a seeded *friendliness* f ~ Beta(2, 2) (mean 0.5). Each
  message is answered with probability f after `reply_delay` (default 1..30 min); the reply shows in
  `GET /messages/list` and webhooks only once its time has come. Statuses: `sent` on acceptance,
  `delivered` after `deliver_delay` (1..20 s), `read` before a reply (or with probability f otherwise).
  A contact that does not answer blocks the sender with probability `block_rate * (1 - f)` (a block
  counts against the number's Cloud API quality rating; the simulator keeps delivering to it).

The randomness that decides an outcome comes from `(seed, sender, recipient, n-th message of that pair)`
rather than from one shared stream, so outcomes do not depend on how concurrent sends of different
channels interleave. Outcomes wait in a time-ordered queue until `SimModel.advance` applies them.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from warmup.simulator.channels import ChannelState, SimMessage

DEFAULT_REPLIES: tuple[str, ...] = (
    "Hi! All good here, thanks.",
    "Thanks for the message!",
    "Sounds good 👍",
    "Hey, how are you?",
    "Sure, talk later.",
    "Great, thank you!",
    "Haha yes",
    "Ok, noted.",
)


@dataclass(frozen=True)
class Behaviour:
    """How recipients act; delays are simulated seconds (LOW, HIGH)."""

    reply_delay: tuple[float, float] = (60.0, 1800.0)
    deliver_delay: tuple[float, float] = (1.0, 20.0)
    read_delay: tuple[float, float] = (5.0, 600.0)
    friendliness: tuple[float, float] = (2.0, 2.0)  # Beta(alpha, beta) of a contact's reply probability
    replies: tuple[str, ...] = DEFAULT_REPLIES
    max_body_chars: int = 4096  # longer texts answer 413
    forbidden: frozenset[str] = frozenset()  # recipient digits that answer 403 for every channel
    block_rate: float = 0.03  # chance, times (1 - friendliness), that an unanswered message gets blocked

    def __post_init__(self) -> None:
        if not 0.0 <= self.block_rate <= 1.0:
            raise ValueError(f"block_rate must be within 0..1, got {self.block_rate}")


@dataclass(frozen=True)
class Inbox:
    """A message lands in a channel's inbox (a contact's reply or a peer's message)."""

    channel: str  # receiving channel digits
    message: SimMessage
    is_reply: bool


@dataclass(frozen=True)
class StatusChange:
    """An outgoing message becomes `delivered` or `read`."""

    channel: str  # sending channel digits
    message_id: str
    status: str


Event = Inbox | StatusChange


class Recipients:
    """The recipients' side: decides each message's outcome and holds the events until they are due.

    `seq` is the model's one counter: it numbers messages and replies and breaks ties in the queue, so
    sharing it keeps ids and event order exactly as they were when all of this lived in one class.
    """

    def __init__(self, seed: int, behaviour: Behaviour, seq: Iterator[int]) -> None:
        self.seed = seed
        self.behaviour = behaviour
        self._seq = seq
        self._events: list[tuple[datetime, int, Event]] = []
        self._blocks: list[tuple[datetime, str, str]] = []  # (when, blocked channel, blocking contact)
        self._friendliness: dict[str, float] = {}

    def friendliness_of(self, digits: str) -> float:
        value = self._friendliness.get(digits)
        if value is None:
            alpha, beta = self.behaviour.friendliness
            value = random.Random(f"{self.seed}|friend|{digits}").betavariate(alpha, beta)
            self._friendliness[digits] = value
        return value

    def schedule(self, channel: ChannelState, message: SimMessage, peer: ChannelState | None) -> None:
        """Decide, from the pair's own seeded stream, when the message is delivered, read and answered.

        `peer` is the receiving channel when the recipient is a registered channel, else None (a contact).
        """
        b = self.behaviour
        src, dst = channel.spec.digits, message.other
        n = channel.pair_counts.get(dst, 0)
        channel.pair_counts[dst] = n + 1
        rng = random.Random(f"{self.seed}|{src}|{dst}|{n}")
        delivered = message.at + timedelta(seconds=rng.uniform(*b.deliver_delay))
        self._push(delivered, StatusChange(src, message.id, "delivered"))
        if peer is not None:
            inbound = SimMessage(
                id=message.id,
                seq=message.seq,
                other=src,
                from_digits=src,
                from_me=False,
                at=delivered,
                body=message.body,
                status="delivered",
                from_name=channel.spec.name,
            )
            is_reply = src in peer.recipients
            self._push(delivered, Inbox(dst, inbound, is_reply))
            self._push(
                delivered + timedelta(seconds=rng.uniform(1.0, 60.0)), StatusChange(src, message.id, "read")
            )
            return
        friendliness = self.friendliness_of(dst)
        if rng.random() < friendliness:
            reply_at = max(
                message.at + timedelta(seconds=rng.uniform(*b.reply_delay)), delivered + timedelta(seconds=2)
            )
            read_at = delivered + (reply_at - delivered) * rng.uniform(0.2, 0.9)
            self._push(read_at, StatusChange(src, message.id, "read"))
            reply = self._written_by(dst, rng.choice(b.replies), reply_at, "Rep")
            self._push(reply_at, Inbox(src, reply, True))
        else:
            if rng.random() < friendliness:
                self._push(
                    delivered + timedelta(seconds=rng.uniform(*b.read_delay)),
                    StatusChange(src, message.id, "read"),
                )
            # drawn last, so a block never changes what the draws above decided
            if b.block_rate > 0 and rng.random() < b.block_rate * (1.0 - friendliness):
                at = delivered + timedelta(seconds=rng.uniform(*b.read_delay))
                heapq.heappush(self._blocks, (at, src, dst))

    def user_writes(self, channel: ChannelState, user: str, body: str, at: datetime) -> None:
        """A user writes to a channel on their own (not an answer the model decided): due at `at`."""
        message = self._written_by(user, body, at, "Usr")
        self._push(at, Inbox(channel.spec.digits, message, user in channel.recipients))

    def _written_by(self, user: str, body: str, at: datetime, prefix: str) -> SimMessage:
        """A message a person (digits ``user``) writes to a channel at ``at``, with a new id."""
        seq = next(self._seq)
        return SimMessage(
            id=f"{prefix}{seq:012d}-{user[-10:]}",
            seq=seq,
            other=user,
            from_digits=user,
            from_me=False,
            at=at,
            body=body,
            status="delivered",
        )

    def due(self, now: datetime) -> Iterator[tuple[datetime, Event]]:
        """Pop the events due by `now`, earliest first (ties in scheduling order)."""
        events = self._events
        while events and events[0][0] <= now:
            due, _, event = heapq.heappop(events)
            yield due, event

    def due_blocks(self, now: datetime) -> Iterator[tuple[datetime, str, str]]:
        """Pop the blocks due by `now` as (when, channel digits, contact digits), earliest first."""
        blocks = self._blocks
        while blocks and blocks[0][0] <= now:
            yield heapq.heappop(blocks)

    def next_at(self) -> datetime | None:
        return self._events[0][0] if self._events else None

    def _push(self, due: datetime, event: Event) -> None:
        heapq.heappush(self._events, (due, next(self._seq), event))
