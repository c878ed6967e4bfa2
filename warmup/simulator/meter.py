"""The simulator's risk meter: Whapi's `riskOfBlocking` readings, computed from a channel's counters.

Readings (1 use caution, 2 needs attention, 3 good) — `channels.Thresholds`, all configurable:
- lifeTime: channel age in days (registration date to today's simulated UTC date):
  `< lifetime_caution_days` (14) -> 1, `< lifetime_good_days` (30) -> 2, else 3.
- riskFactorChats (response rate): replies received / messages sent over the trailing
  `response_window` (7 days); fewer than `response_min_sends` (5) sends -> 2 (not enough data);
  otherwise `>= response_good` (0.30) -> 3, `>= response_fair` (0.10) -> 2, else 1. A reply is an
  incoming message from a chat the channel has written to.
- riskFactorContacts: share of distinct recipients (ever) that are peers or have written back:
  `>= contacts_good` (0.50) -> 3, `>= contacts_fair` (0.20) -> 2, else 1; with fewer than
  `contacts_min_recipients` (5) recipients it is never below 2 (too early to judge).
- riskFactor (overall): the rounded mean of the three, but at most one above the worst of them.
- The meter is computed by `POST` once per simulated UTC day; later calls that day return the saved one.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from warmup.simulator.channels import ChannelState, SimError, Thresholds


def level(value: float, good: float, fair: float) -> int:
    """3 when value >= good, 2 when >= fair, else 1."""
    return 3 if value >= good else 2 if value >= fair else 1


def overall_of(lifetime: int, chats: int, contacts: int) -> int:
    """The overall factor: the rounded mean, but never more than one above the worst factor."""
    factors = (lifetime, chats, contacts)
    mean_rounded = int(sum(factors) / 3 + 0.5)
    return min(min(factors) + 1, mean_rounded)


@dataclass(frozen=True)
class MeterReading:
    channel_id: str
    day: date
    lifetime: int
    overall: int
    chats: int
    contacts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel_id,
            "lastUpdateDate": f"{self.day.month}/{self.day.day}/{self.day.year}",
            "lifeTime": self.lifetime,
            "riskFactor": self.overall,
            "riskFactorChats": self.chats,
            "riskFactorContacts": self.contacts,
        }


class Meter:
    """Computes readings and keeps each channel's saved one (the paid-plan check is the caller's)."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._saved: dict[str, MeterReading] = {}  # by channel digits

    def reading(self, channel: ChannelState, peers: Container[str], now: datetime) -> MeterReading:
        """A fresh reading as of `now`; `peers` holds the digits of every registered channel."""
        t = self.thresholds
        channel.prune(t, now)
        age = (now.date() - channel.spec.registered).days
        lifetime = 1 if age < t.lifetime_caution_days else 2 if age < t.lifetime_good_days else 3
        sends = len(channel.recent_sends)
        if sends < t.response_min_sends:
            chats = 2
        else:
            chats = level(len(channel.recent_replies) / sends, t.response_good, t.response_fair)
        if not channel.recipients:
            contacts = 2
        else:
            known = sum(1 for r in channel.recipients if r in peers or r in channel.repliers)
            contacts = level(known / len(channel.recipients), t.contacts_good, t.contacts_fair)
            if len(channel.recipients) < t.contacts_min_recipients:
                contacts = max(contacts, 2)
        return MeterReading(
            channel.spec.channel_id,
            now.date(),
            lifetime,
            overall_of(lifetime, chats, contacts),
            chats,
            contacts,
        )

    def today(self, channel: ChannelState, peers: Container[str], now: datetime) -> MeterReading:
        """`POST`: today's reading, computed once per simulated UTC day and saved."""
        digits = channel.spec.digits
        saved = self._saved.get(digits)
        if saved is None or saved.day != now.date():
            saved = self._saved[digits] = self.reading(channel, peers, now)
        return saved

    def saved(self, channel: ChannelState) -> MeterReading | None:
        return self._saved.get(channel.spec.digits)

    def last(self, channel: ChannelState) -> MeterReading:
        """`GET`: the last computed reading; 404 before the first `POST`."""
        saved = self.saved(channel)
        if saved is None:
            raise SimError(404, "Not found", "no reading computed yet: POST first")
        return saved
