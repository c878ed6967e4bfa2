"""Parsers for the small value languages plan authors write by hand.

Durations (`40s`, `6m`, `36h`, `3d`, `1h30m`), ranges (`15..40`, `40s..6m`), weekday sets (`mon-fri`,
`sat`, `mon,wed,fri`) and clock intervals (`09:00-12:30`). Each parser raises ``ValueError`` with a
message meant for the person who wrote the value; pydantic turns it into a located error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names in ISO order: index 0 is Monday, as ``date.weekday()`` counts."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> timedelta:
    """Parse ``40s``, ``6m``, ``36h``, ``3d``, ``1h30m`` (or a bare number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 40s, 6m, 36h or 3d, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 40s, 6m, 36h or 3d, got {value!r}")
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError("expected a duration like 40s, 6m, 36h or 3d, got an empty string")
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"expected a duration like 40s, 6m, 36h or 3d (units ms s m h d w), got {value!r}")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """Write a timedelta back the way an author would: ``1h30m``, ``40s``."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class DurationRange:
    """An inclusive range of durations, e.g. the random gap ``40s..6m`` between two sends."""

    low: timedelta
    high: timedelta

    def __str__(self) -> str:
        if self.low == self.high:
            return format_duration(self.low)
        return f"{format_duration(self.low)}..{format_duration(self.high)}"


def parse_duration_range(value: object) -> DurationRange:
    """Parse ``40s..6m`` (or a single duration, meaning exactly that long)."""
    if isinstance(value, DurationRange):
        return value
    if isinstance(value, str) and ".." in value:
        low_text, _, high_text = value.partition("..")
        low, high = parse_duration(low_text), parse_duration(high_text)
        if high < low:
            raise ValueError(f"range {value!r} ends before it starts")
        return DurationRange(low, high)
    one = parse_duration(value)
    return DurationRange(one, one)


def parse_int_range(value: object) -> tuple[int, int]:
    """Parse a volume: ``8`` (constant) or ``15..40`` (from 15 to 40 across the step's days)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number or a range like 15..40, got {value!r}")
    if isinstance(value, int):
        return value, value
    if isinstance(value, str):
        text = value.strip()
        low_text, sep, high_text = text.partition("..")
        try:
            low = int(low_text)
            high = int(high_text) if sep else low
        except ValueError:
            raise ValueError(f"expected a whole number or a range like 15..40, got {value!r}") from None
        return low, high
    raise ValueError(f"expected a whole number or a range like 15..40, got {value!r}")


def parse_day_span(value: object) -> tuple[int, int]:
    """Parse plan days of a ramp step: ``5`` or ``1-3`` (inclusive, 1-based)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a plan day like 4 or a span like 1-3, got {value!r}")
    if isinstance(value, int):
        return value, value
    if isinstance(value, str):
        text = value.strip()
        first_text, sep, last_text = text.partition("-")
        if not sep:
            first_text, sep, last_text = text.partition("..")
        try:
            first = int(first_text)
            last = int(last_text) if sep else first
        except ValueError:
            raise ValueError(f"expected a plan day like 4 or a span like 1-3, got {value!r}") from None
        return first, last
    raise ValueError(f"expected a plan day like 4 or a span like 1-3, got {value!r}")


def _weekday_index(name: str, whole: str) -> int:
    key = name.strip().lower()[:3]
    if key not in WEEKDAYS or len(name.strip()) < 3:
        raise ValueError(
            f"unknown weekday {name.strip()!r} in {whole!r}; use mon tue wed thu fri sat sun, "
            "a span like mon-fri, or a list like mon,wed,fri"
        )
    full_names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    if name.strip().lower() not in (WEEKDAYS[WEEKDAYS.index(key)], full_names[WEEKDAYS.index(key)]):
        raise ValueError(f"unknown weekday {name.strip()!r} in {whole!r}; use mon tue wed thu fri sat sun")
    return WEEKDAYS.index(key)


def parse_weekdays(value: object) -> frozenset[int]:
    """Parse ``mon-fri``, ``sat``, ``mon,wed,fri``, ``daily``/``all`` or a YAML list of those."""
    if isinstance(value, list | tuple | set | frozenset):
        days: set[int] = set()
        for item in value:
            days |= parse_weekdays(item)
        return frozenset(days)
    if not isinstance(value, str):
        raise ValueError(f"expected weekdays like mon-fri or sat, got {value!r}")
    text = value.strip().lower()
    if text in ("daily", "all", "every day", "mon-sun"):
        return frozenset(range(7))
    result: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            start_name, _, end_name = part.partition("-")
            start, end = _weekday_index(start_name, value), _weekday_index(end_name, value)
            day = start
            while True:  # wraps: fri-mon is fri sat sun mon
                result.add(day)
                if day == end:
                    break
                day = (day + 1) % 7
        elif part.strip():
            result.add(_weekday_index(part, value))
    if not result:
        raise ValueError(f"expected weekdays like mon-fri or sat, got {value!r}")
    return frozenset(result)


def format_weekdays(days: frozenset[int]) -> str:
    """Write a weekday set back compactly: ``mon-fri``, ``sat``, ``mon,wed``."""
    return ",".join(WEEKDAYS[d] for d in sorted(days))


def _parse_clock(text: str, whole: str) -> time | None:
    """Parse ``09:00``; returns None for ``24:00`` (end of day)."""
    match = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?", text.strip())
    if not match:
        raise ValueError(f"expected hours like 09:00-12:30, got {whole!r}")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if hour == 24 and minute == 0:
        return None
    if hour > 23 or minute > 59:
        raise ValueError(f"{text.strip()!r} in {whole!r} is not a time of day")
    return time(hour, minute)


def parse_hours(value: object) -> tuple[int, int]:
    """Parse a local clock interval ``09:00-12:30`` into minutes after midnight (end may be 24:00 = 1440)."""
    if not isinstance(value, str) or "-" not in value:
        raise ValueError(f"expected hours like 09:00-12:30, got {value!r}")
    start_text, _, end_text = value.partition("-")
    start = _parse_clock(start_text, value)
    if start is None:
        raise ValueError(f"a window cannot start at 24:00 ({value!r})")
    end = _parse_clock(end_text, value)
    start_minutes = start.hour * 60 + start.minute
    end_minutes = 1440 if end is None else end.hour * 60 + end.minute
    if end_minutes <= start_minutes:
        raise ValueError(f"window {value!r} ends before it starts (windows cannot cross midnight)")
    return start_minutes, end_minutes
