"""Spread a day's quota over the plan's send windows, like a person would (pure: no clock, no I/O).

Everything is computed in whole microseconds of UTC so that "never two equal consecutive gaps" and the
bounds are exact, and the same `random.Random` seed always gives the same day.

Local days and windows in a number's zone (DST included) come from `warmup.core.localtime`.

Pacing rules enforced by `spread`:

* every time lies inside one of the day's window spans and at or after ``not_before``;
* consecutive sends inside one span are ``gap.low..gap.high`` apart; the first send of a later span is
  at least ``gap.low`` after the previous send (a break between windows has no upper bound);
* no two consecutive gaps are equal (microsecond jitter where needed);
* any ``max_per_hour + 1`` consecutive sends span at least an hour, i.e. no half-open 60-minute
  interval holds more than ``max_per_hour`` sends;
* the sends of a span form one session whose mean gap is chosen from the time available, placed at a
  random offset inside the span, so a small quota is not crammed at the window start; a session that
  leaves room keeps a tail free before the span's end (a fifth of its length and one long gap, at most
  half the room), so a send that comes late (the claim waits for the last one to end) can catch up.

Because gaps inside a window never exceed ``gap.high``, a small quota forms a short session somewhere in
the window (at a random place) rather than stretching over all of it; a wider ``gap.high`` spreads it.
On busy days the plan's own gap range is tried first and kept if no hour breaks the cap; otherwise the
smallest gap is raised step by step, at worst to ``1h / max_per_hour``, which can never break it. When
``gap.high x max_per_hour`` is under an hour, a window holds one session of at most ``max_per_hour``
sends and windows are kept an hour apart.

A zero ``gap.low`` is raised to one second and a fixed gap (``gap: 40s``) is widened by one second,
because two sends in the same second, or metronome-regular gaps, are exactly what looks automated.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from warmup.core.localtime import local_windows, window_spans, zone
from warmup.core.plan.model import Plan
from warmup.core.plan.values import human_duration

_US = 1_000_000
_SECOND = timedelta(seconds=1)
_HOUR_US = 3600 * _US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHIFT_RESERVE_US = 4
"""Microseconds kept free in every span so a session can move a little to avoid an equal gap."""

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class SpreadResult:
    """The day's send times (aware UTC, strictly increasing) with a typing delay for each.

    ``cut`` counts the sends of the quota that could not be placed, and ``reason`` says why in plain
    words (None when nothing was cut).
    """

    times: list[datetime]
    typing: list[float]
    cut: int
    reason: str | None


# --- spreading --------------------------------------------------------------------------------------


def _to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class _Mode:
    """How gaps are drawn: the smallest gap, the smallest break between spans, sends per span."""

    min_gap: int
    break_gap: int
    per_span: int | None


@dataclass(frozen=True)
class _Pacing:
    low: int
    high: int
    per_hour: int

    @classmethod
    def of(cls, plan: Plan) -> _Pacing:
        low = max(_to_micros(plan.pacing.gap.low), _US)
        high = max(_to_micros(plan.pacing.gap.high), low + _US)
        return cls(low, high, plan.pacing.max_per_hour)

    @property
    def hourly_gap(self) -> int:
        """A gap that, kept between every two sends, can never break the hourly cap."""
        return max(self.low, -(-_HOUR_US // self.per_hour))

    @property
    def conflict(self) -> bool:
        """True when gap.high x max_per_hour is under an hour: a long session must break the cap."""
        return self.hourly_gap + _US > self.high

    def safe_mode(self) -> _Mode:
        if self.conflict:
            # One session of at most max_per_hour sends per span, an hour's break between spans.
            return _Mode(self.low, _HOUR_US, self.per_hour)
        return _Mode(self.hourly_gap, self.hourly_gap, None)

    def trial_modes(self) -> list[_Mode]:
        """Gap floors between the plan's own and the always-safe one, loosest first.

        Each trial's result must be checked against the hourly cap; the loosest that passes keeps the
        most variety (short and long gaps mixed) on busy days.
        """
        if self.conflict or self.hourly_gap <= self.low:
            return []
        halfway = (self.low + self.hourly_gap) // 2
        return [_Mode(floor, self.hourly_gap, None) for floor in (self.low, self.low, halfway, halfway)]


def _to_micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _capacity(length: int, mode: _Mode) -> int:
    """Most sends one span of ``length`` microseconds can hold with gaps of at least ``mode.min_gap``."""
    usable = length - 1 - _SHIFT_RESERVE_US
    if usable < 0:
        return 0
    count = usable // (mode.min_gap + 1) + 1
    return count if mode.per_span is None else min(count, mode.per_span)


def _effective_spans(spans: list[tuple[int, int]], break_gap: int) -> list[tuple[int, int]]:
    """Trim span starts so a send in one span is always ``break_gap`` after any send of the span before."""
    result: list[tuple[int, int]] = []
    for start, end in spans:
        begin = start if not result else max(start, result[-1][1] + break_gap)
        if begin < end:
            result.append((begin, end))
    return result


def _allocate(count: int, lengths: list[int], caps: list[int], rng: random.Random) -> list[int]:
    """Share ``count`` sends among spans in proportion to their length, within each span's capacity.

    Whole shares go first; the leftover sends go one per span, drawn by the fractional parts of the
    shares, so a quota of 1 lands in the morning or the afternoon window by chance, not always the same.
    """
    alloc = [0] * len(lengths)
    remaining = count
    while remaining > 0:
        active = [j for j in range(len(lengths)) if alloc[j] < caps[j]]
        if not active:
            break
        total = sum(lengths[j] for j in active)
        fractions: dict[int, float] = {}
        for j in active:
            share = remaining * lengths[j] / total
            whole = min(int(share), caps[j] - alloc[j])
            alloc[j] += whole
            fractions[j] = share - int(share) if alloc[j] < caps[j] else 0.0
        remaining = count - sum(alloc)
        candidates = [j for j in active if alloc[j] < caps[j]]
        weights = {j: fractions[j] for j in candidates}
        if not any(weights.values()):
            weights = {j: float(lengths[j]) for j in candidates}
        while remaining > 0 and weights:
            pick = rng.random() * sum(weights.values())
            chosen = next(reversed(weights))
            for j, weight in weights.items():
                if pick < weight:
                    chosen = j
                    break
                pick -= weight
            alloc[chosen] += 1
            remaining -= 1
            del weights[chosen]
    return alloc


def _session_gaps(length: int, count: int, mode: _Mode, high: int, rng: random.Random) -> list[int]:
    """``count - 1`` gaps in [min_gap, high], never two equal in a row, summing to at most the span.

    Gaps follow ``min + (high - min) * u**p`` with p chosen so the mean is near ``length / count``: the
    session then fills most of the span, with the shape skewed to whichever end the quota needs.
    """
    if count <= 1:
        return []
    low = mode.min_gap
    target = length / count
    fraction = min(max((target - low) / (high - low), 0.1), 0.9)
    power = 1 / fraction - 1
    gaps = [low + int((high - low) * rng.random() ** power) for _ in range(count - 1)]
    room = (length - 1 - _SHIFT_RESERVE_US - (count - 1)) - (count - 1) * low
    extra = sum(gap - low for gap in gaps)
    if extra > room:
        gaps = [low + (gap - low) * room // extra for gap in gaps]
    for i in range(1, len(gaps)):
        if gaps[i] == gaps[i - 1]:
            gaps[i] += 1 if gaps[i] < high else -1
    return gaps


def _place(
    spans: list[tuple[int, int]],
    alloc: list[int],
    mode: _Mode,
    high: int,
    rng: random.Random,
    history: list[int],
) -> list[int]:
    """Lay each span's session at a random offset; nudge an offset so the break gap differs from its
    neighbours (each span keeps a few spare microseconds for that). ``history`` holds earlier sends."""
    times: list[int] = []
    last_time = history[-1] if history else None
    last_gap = history[-1] - history[-2] if len(history) >= 2 else None
    for (start, end), count in zip(spans, alloc, strict=True):
        if count == 0:
            continue
        gaps = _session_gaps(end - start, count, mode, high, rng)
        latest = end - 1 - sum(gaps)
        if latest - start > 2 * high:  # room to catch up before the end, when there is room to spare
            latest -= min((latest - start) // 2, sum(gaps) // 5 + high)
        offset = rng.randint(0, latest - start)
        if last_time is not None:
            forbidden = {g for g in (last_gap, gaps[0] if gaps else None) if g is not None}
            for delta in (0, 1, -1, 2, -2, 3, -3):
                if (
                    0 <= offset + delta <= latest - start
                    and start + offset + delta - last_time not in forbidden
                ):
                    offset += delta
                    break
            last_gap = start + offset - last_time
        moment = start + offset
        times.append(moment)
        for gap in gaps:
            moment += gap
            times.append(moment)
        if gaps:
            last_gap = gaps[-1]
        last_time = times[-1]
    return times


def _seam(earlier: list[int], pacing: _Pacing) -> int:
    """Earliest new send after ``earlier`` sends that keeps the gap and hourly rules across the seam.

    New sessions keep every gap >= the safe gap g, so the j-th new send is >= first + j*g; a sliding
    run holding the last m earlier sends then spans an hour if first >= earlier[-m] + m*g for every m.
    """
    if pacing.conflict:
        return earlier[-1] + _HOUR_US
    gap = pacing.hourly_gap
    recent = earlier[-pacing.per_hour :]
    return max(t + (len(recent) - i) * gap for i, t in enumerate(recent))


def _within_hourly_cap(times: list[int], per_hour: int) -> bool:
    return all(times[i + per_hour] - times[i] >= _HOUR_US for i in range(len(times) - per_hour))


def _local_clock(moment: int, timezone: str) -> str:
    return _from_us(moment).astimezone(zone(timezone)).strftime("%H:%M")


def spread(
    local_date: date,
    quota: int,
    plan: Plan,
    timezone: str,
    rng: random.Random,
    not_before: datetime | None = None,
    earlier: Sequence[datetime] = (),
) -> SpreadResult:
    """Send times for ``quota`` messages on ``local_date`` of a number in ``timezone``.

    ``not_before`` (aware) drops the window time before it: resuming mid-day or planning late re-spreads
    the remainder over the time left instead of bursting. Sends that cannot fit (windows too short for
    the gaps, the hourly cap, no window time left) are cut and the reason is given.

    ``earlier`` (aware) are sends already made or planned that day: new sends come after all of them,
    and the gap, never-equal and hourly rules hold across the seam too. Without it the rules cover the
    sends of this result only.
    """
    zone(timezone)  # an unknown zone is an error even on a rest day
    if quota < 0:
        raise ValueError("quota cannot be negative")
    if not_before is not None and not_before.tzinfo is None:
        raise ValueError("not_before must be an aware datetime")
    if any(t.tzinfo is None for t in earlier):
        raise ValueError("earlier sends must be aware datetimes")
    if quota == 0:
        return SpreadResult([], [], 0, None)
    day_name = _DAY_NAMES[local_date.weekday()]
    if local_date.weekday() in plan.schedule.rest_days:
        return SpreadResult([], [], quota, f"{day_name} is a rest day in plan {plan.name!r}")
    if not local_windows(local_date, plan):
        return SpreadResult([], [], quota, f"plan {plan.name!r} has no send window on {day_name}")
    spans = [(_to_us(s), _to_us(e)) for s, e in window_spans(local_date, plan, timezone)]
    if not spans:
        return SpreadResult(
            [], [], quota, f"the send windows of {local_date} fall in the hour skipped by DST"
        )
    pacing = _Pacing.of(plan)
    history = sorted(_to_us(t) for t in earlier)
    floors = ([_to_us(not_before)] if not_before is not None else []) + (
        [_seam(history, pacing)] if history else []
    )
    after = ""
    if floors:
        floor = max(floors)
        spans = [(max(s, floor), e) for s, e in spans if e > floor]
        after = f" after {_local_clock(floor, timezone)} local time"
        if not spans:
            return SpreadResult([], [], quota, f"no send-window time is left{after}")

    safe = pacing.safe_mode()
    usable = _effective_spans(spans, safe.break_gap)
    caps = [_capacity(e - s, safe) for s, e in usable]
    count = min(quota, sum(caps))
    lengths = [e - s for s, e in usable]
    alloc = _allocate(count, lengths, caps, rng)

    times: list[int] | None = None
    for mode in pacing.trial_modes():
        attempt = _place(usable, alloc, mode, pacing.high, rng, history)
        if _within_hourly_cap(history[-pacing.per_hour :] + attempt, pacing.per_hour):
            times = attempt
            break
    if times is None:
        times = _place(usable, alloc, safe, pacing.high, rng, history)

    typing_low = plan.pacing.typing.low.total_seconds()
    typing_high = plan.pacing.typing.high.total_seconds()
    typing = [rng.uniform(typing_low, typing_high) for _ in times]
    cut = quota - len(times)
    reason = _cut_reason(quota, len(times), spans, pacing, after) if cut else None
    return SpreadResult([_from_us(t) for t in times], typing, cut, reason)


def _cut_reason(quota: int, fitted: int, spans: list[tuple[int, int]], pacing: _Pacing, after: str) -> str:
    """Say in plain words why only ``fitted`` of ``quota`` sends fit."""
    total = timedelta(microseconds=sum(e - s for s, e in spans))
    where = f"only {fitted} of {quota} sends fit in the {human_duration(total)} of send windows{after}"
    gap_low = human_duration(timedelta(microseconds=pacing.low))
    if pacing.conflict:
        gap_high = human_duration(timedelta(microseconds=pacing.high))
        return (
            f"{where}: gap up to {gap_high} x max_per_hour {pacing.per_hour} is under an hour, so each "
            f"window holds at most {pacing.per_hour} sends and windows are kept an hour apart"
        )
    by_gap = sum(_capacity(e - s, _Mode(pacing.low, pacing.low, None)) for s, e in spans)
    if by_gap > fitted:
        return f"{where}: max_per_hour {pacing.per_hour} allows no more"
    return f"{where}: at the minimum gap of {gap_low} the windows hold no more"


__all__ = [
    "SpreadResult",
    "spread",
]
