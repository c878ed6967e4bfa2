"""Pacing of single sends: whether an instant is inside a day's send windows, the end of the window
holding it, where a reply fits among a number's other sends (the plan's minimum gap and hourly cap), and
the claim's pacing rule (`next_claim_at`): when a number may start its next send.

Pure: times come in as arguments. `warmup.core.spread` places a whole day; this places one send into a
day already planned (a peer's reply, a retry).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from warmup.core.localtime import local_date_of, window_spans
from warmup.core.plan.model import Plan


def due_at(scheduled_at: datetime, not_before: datetime | None) -> datetime:
    """When a message falls due: its scheduled time, or its retry time (``not_before``) if that is later.

    The due rule in Python, for every caller; `warmup.store.tables.falls_due` is the same rule as a query
    condition, and PostgreSQL's claim statement (`warmup.store.claims`) writes it in its SQL.
    """
    return max(scheduled_at, not_before) if not_before is not None else scheduled_at


def in_windows(moment: datetime, local_date: date, plan: Plan | None, timezone: str) -> bool:
    """Whether ``moment`` falls inside a send window of ``local_date`` (or inside that day, planless)."""
    if local_date_of(moment, timezone) != local_date:
        return False
    if plan is None:
        return True
    return any(start <= moment < end for start, end in window_spans(local_date, plan, timezone))


def span_end(spans: Sequence[tuple[datetime, datetime]], moment: datetime) -> datetime | None:
    """The end of the half-open span holding ``moment``, or None when it lies in none (``spans`` sorted
    and disjoint, as `window_spans` gives them; found by bisection: planning asks once per message)."""
    at = bisect_right(spans, moment, key=lambda span: span[0]) - 1
    if at >= 0 and moment < spans[at][1]:
        return spans[at][1]
    return None


def place_reply(
    earliest: datetime,
    spans: Sequence[tuple[datetime, datetime]],
    taken: Sequence[datetime],
    gap_low: timedelta,
    max_per_hour: int,
) -> datetime | None:
    """The first instant >= ``earliest`` inside one of ``spans`` that is at least ``gap_low`` away from
    every ``taken`` send and keeps every 60-minute interval at ``max_per_hour`` sends or fewer; None when
    no such instant exists (pure: the peer-reply placement).

    A conflicting candidate moves forward to the next instant that could clear it (a taken send +
    gap_low, or a taken send + 1 h), so the search ends after at most two moves per taken send.
    """
    hour = timedelta(hours=1)
    times = sorted(taken)
    limit = max(max_per_hour, 1)
    for start, end in spans:
        at = max(earliest, start)
        while at < end:
            if any(abs(t - at) < gap_low for t in times) or _crowded(times, at, limit, hour):
                later = [t + gap_low for t in times if t + gap_low > at]
                later += [t + hour for t in times if t + hour > at]
                if not later:
                    break
                at = min(later)
                continue
            return at
    return None


def _crowded(times: list[datetime], at: datetime, limit: int, hour: timedelta) -> bool:
    """Whether adding ``at`` puts ``limit + 1`` sends inside some 60-minute interval."""
    index = bisect_left(times, at)
    for first in range(max(index - limit, 0), index + 1):
        last = first + limit - 1  # the group: times[first..last] plus `at`
        if last >= len(times):
            break
        low, high = min(times[first], at), max(times[last], at)
        if high - low < hour:
            return True
    return False


HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Pace:
    """Where a number's sending stands: the send in flight (since when), when its last send ended, and
    the claims of the last hour."""

    busy_since: datetime | None = None  # a send is in flight since then (None: none is)
    free_at: datetime | None = None
    recent: tuple[datetime, ...] = ()  # when its sends of the last hour ended


def next_claim_at(pace: Pace, now: datetime, gap: timedelta, per_hour: int | None) -> datetime:
    """The first instant >= ``now`` at which the number may claim its next send (``now``: at once).

    The claim's pacing rule, so that the provider never sees two sends of a number closer than the
    plan's minimum gap, whatever the claim lag, the workers or the clock speed: at most one send in
    flight, the next one starts ``gap`` after the last one ENDED (its outcome recorded, which is after
    the provider received it), and no more than ``per_hour`` sends ENDED in the hour before it starts
    (``pace.recent`` holds ends, not claims: each send reaches the provider between its claim and its
    end, so the provider never sees more than ``per_hour`` in 60 minutes). While a send is in flight
    its end is unknown; the earliest it can end is now, so the answer is then ``now + gap``
    and never ``now`` itself, even with no gap (a guess to come back at, never a permission).
    """
    at = now
    if pace.busy_since is not None:
        at = max(at, now + max(gap, timedelta(microseconds=1)))
    if pace.free_at is not None:
        at = max(at, pace.free_at + gap)
    if per_hour is not None:
        recent = sorted(t for t in pace.recent if t > at - HOUR)
        if len(recent) >= max(per_hour, 1):
            at = max(at, recent[-max(per_hour, 1)] + HOUR)
    return at


def recent_claims(recent: Sequence[datetime], now: datetime) -> tuple[datetime, ...]:
    """The sends that still count for the hourly cap at ``now`` (ended in the last 60 minutes), oldest
    first."""
    return tuple(sorted(t for t in recent if t > now - HOUR))


def next_window(
    spans: Sequence[tuple[datetime, datetime]], now: datetime
) -> tuple[datetime, datetime] | None:
    """The send window holding ``now`` or the next one to open (``spans`` sorted), or None when the
    day's last window has closed."""
    for start, end in spans:
        if end > now:
            return start, end
    return None
