"""What became of a number-day's quota: sent, failed, unknown, still pending, skipped by cause, and the
part planning could not fit. Pure: built from stored counts (`warmup.store.history.day_accounts`), read
by every view that shows a day (the demo's day lines and summary, `status`, `history`, `why`, charts).

Delivered is ``sent / quota``, the quota being the day's decision: a provider throttle that lowered it
later is a shortfall with its cause (`quota_cut`), not a smaller target. Every message short of it is
accounted for by a cause, never left unexplained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from warmup.core.domain import SkipCause


@dataclass(frozen=True)
class DayAccount:
    """One number's local day: its decision and what became of its quota."""

    number_id: int
    local_date: date
    plan_day: int
    action: str  # the day's decision (advance, hold, cap, ...): what the ramp was told to do
    quota: int  # as decided (a later throttle's cut is `quota_cut`)
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    pending: int = 0  # planned, queued or sending: the day is not over yet (or its close is due)
    skipped: Mapping[str, int] = field(default_factory=dict)  # cause (`SkipCause` value, or "other") -> count
    cut: int = 0  # quota planning could not fit into the day's windows (`cut_reason` says why)
    cut_reason: str | None = None
    quota_cut: int = 0  # taken off the quota after planning (a provider throttle)
    advanced: bool | None = None  # the plan day moved on after this day (None: not known yet)

    @property
    def delivered(self) -> float | None:
        """Sent as a share of the quota (None on a day with no quota)."""
        return self.sent / self.quota if self.quota > 0 else None

    @property
    def missing(self) -> int:
        """How many messages short of the quota the day is."""
        return max(self.quota - self.sent, 0)

    def shortfall(self) -> list[tuple[str, int]]:
        """Why the day is short of its quota, biggest first, as ``(label, count)`` pairs. A message
        skipped at a full quota is not listed: the quota went to sends that failed or are unknown (listed),
        or to the cut (listed)."""
        parts: list[tuple[str, int]] = []
        if self.cut:
            parts.append(("not planned (did not fit)", self.cut))
        if self.quota_cut:
            parts.append(("quota cut by a throttle", self.quota_cut))
        for cause, count in self.skipped.items():
            if count and cause != SkipCause.QUOTA.value:
                parts.append((_skip_label(cause), count))
        for label, count in (("failed", self.failed), ("unknown", self.unknown), ("pending", self.pending)):
            if count:
                parts.append((label, count))
        return sorted(parts, key=lambda part: (-part[1], part[0]))

    def shortfall_text(self, top: int = 3) -> str:
        """The top reasons in words, e.g. ``windows ended 12, paused 4``; empty when nothing is missing."""
        if not self.missing:
            return ""
        return ", ".join(f"{label} {count}" for label, count in self.shortfall()[:top])


def percent(share: float | None) -> str:
    """A delivered share as people read it: ``97%``, ``100%``, ``-`` for no quota (floored: 99.6% of a
    quota is not "100%")."""
    if share is None:
        return "-"
    return f"{int(share * 100 + 1e-9)}%"


def _skip_label(cause: str) -> str:
    try:
        return f"skipped: {SkipCause(cause).label}"
    except ValueError:
        return f"skipped: {cause}"
