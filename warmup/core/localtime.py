"""Local time of a number: its calendar day, the bounds of a local day and the day's send windows as UTC
spans, correct across DST changes (pure: no clock, no I/O).

Local time and DST. A window such as ``01:00-04:00`` is the set of real instants at which the number's
wall clock, on that local date, shows a time inside the window. So on a spring-forward day a window
that spans the skipped hour is an hour shorter (the missing local times simply do not occur), and on a
fall-back day a window that spans the repeated hour is an hour longer: both passes of the repeated
hour count, in real (UTC) order, so times never repeat or go backwards. A window whose edge falls inside
the repeated hour may become two UTC spans (the first pass, then the second pass); `window_spans`
returns the merged, sorted UTC spans of the day.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from warmup.core.errors import UserError
from warmup.core.plan.model import Plan

_SECOND = timedelta(seconds=1)
_SCAN_MARGIN = timedelta(hours=18)
"""Wider than any UTC offset ever used (-15:56 LMT), so every instant of the local day is covered."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; an unknown name is the user's mistake (fleet file), not a crash."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown timezone {name!r}: use an IANA name like Europe/Berlin or America/Sao_Paulo"
        ) from None


def _offset_at(utc_naive: datetime, tz: ZoneInfo) -> timedelta:
    offset = utc_naive.replace(tzinfo=UTC).astimezone(tz).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    return offset


@functools.lru_cache(maxsize=1024)
def _segments(local_date: date, tz: ZoneInfo) -> tuple[tuple[datetime, datetime, timedelta], ...]:
    """Stretches of naive UTC time around ``local_date`` during which the zone's offset is constant.

    The offset is sampled hourly and each change is narrowed down to the second by bisection; two
    transitions less than an hour apart that cancel out (no real zone has them) would be missed.
    Cached: a fleet's numbers share a few zones and days, and the scan (~50 offset look-ups) was
    most of the cost of spreading a day.
    """
    midnight = datetime.combine(local_date, time())
    low, high = midnight - _SCAN_MARGIN, midnight + timedelta(days=1) + _SCAN_MARGIN
    segments: list[tuple[datetime, datetime, timedelta]] = []
    seg_start, seg_offset = low, _offset_at(low, tz)
    point = low
    while point < high:
        nxt = min(point + timedelta(hours=1), high)
        nxt_offset = _offset_at(nxt, tz)
        if nxt_offset != seg_offset:
            before, after = 0, int((nxt - point).total_seconds())
            while after - before > 1:
                middle = (before + after) // 2
                if _offset_at(point + middle * _SECOND, tz) == seg_offset:
                    before = middle
                else:
                    after = middle
            change = point + after * _SECOND
            segments.append((seg_start, change, seg_offset))
            seg_start, seg_offset = change, nxt_offset
        point = nxt
    segments.append((seg_start, high, seg_offset))
    return tuple(segments)


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _wall_to_utc(
    wall: list[tuple[datetime, datetime]], segments: Sequence[tuple[datetime, datetime, timedelta]]
) -> list[tuple[datetime, datetime]]:
    """UTC spans of the instants whose local wall time falls in one of the ``wall`` intervals."""
    pieces = []
    for wall_start, wall_end in wall:
        for seg_start, seg_end, offset in segments:
            start, end = max(seg_start, wall_start - offset), min(seg_end, wall_end - offset)
            if start < end:
                pieces.append((start, end))
    return [(s.replace(tzinfo=UTC), e.replace(tzinfo=UTC)) for s, e in _merge(pieces)]


def local_date_of(instant: datetime, timezone: str) -> date:
    """The calendar date the number's own clock shows at ``instant`` (quotas reset at local midnight)."""
    if instant.tzinfo is None:
        raise ValueError("local_date_of needs an aware datetime")
    return instant.astimezone(zone(timezone)).date()


def local_day_bounds(local_date: date, timezone: str) -> tuple[datetime, datetime]:
    """First instant of ``local_date`` and first instant of the next local date, in UTC.

    The day is 23 or 25 hours long on DST changes (23h30m or 24h30m in Lord Howe); where midnight
    itself is skipped, the day starts when the clock jumps.
    """
    midnight = datetime.combine(local_date, time())
    spans = _wall_to_utc([(midnight, midnight + timedelta(days=1))], _segments(local_date, zone(timezone)))
    return spans[0][0], spans[-1][1]


def local_windows(local_date: date, plan: Plan) -> list[tuple[int, int]]:
    """The day's windows as merged (start, end) minutes after local midnight; none on a rest day."""
    weekday = local_date.weekday()
    if weekday in plan.schedule.rest_days:
        return []
    minutes = sorted((w.start_minute, w.end_minute) for w in plan.schedule.windows if weekday in w.days)
    merged: list[tuple[int, int]] = []
    for start, end in minutes:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


_Spans = tuple[tuple[datetime, datetime], ...]
_spans_seen: dict[tuple[date, str, int], tuple[Plan, _Spans]] = {}
_SPANS_KEPT = 4096


def window_spans(local_date: date, plan: Plan, timezone: str) -> list[tuple[datetime, datetime]]:
    """The day's send windows as sorted, disjoint, half-open UTC spans (DST applied, see module doc).

    Remembered per (day, zone, plan object): planning a fleet's day asks for the same few dozen
    combinations thousands of times, twice a number. Plans are frozen, and the plan itself is kept
    with its answer, so an id reused by another plan object can never match.
    """
    key = (local_date, timezone, id(plan))
    seen = _spans_seen.get(key)
    if seen is not None and seen[0] is plan:
        return list(seen[1])
    spans = _window_spans(local_date, plan, timezone)
    if len(_spans_seen) >= _SPANS_KEPT:
        _spans_seen.clear()  # a long-running worker sees new days and edited plans: start over
    _spans_seen[key] = (plan, tuple(spans))
    return spans


def _window_spans(local_date: date, plan: Plan, timezone: str) -> list[tuple[datetime, datetime]]:
    windows = local_windows(local_date, plan)
    tz = zone(timezone)
    if not windows:
        return []
    midnight = datetime.combine(local_date, time())
    wall = [(midnight + timedelta(minutes=s), midnight + timedelta(minutes=e)) for s, e in windows]
    return _wall_to_utc(wall, _segments(local_date, tz))
