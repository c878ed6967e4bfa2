"""Parsers for the small value languages plan authors write by hand.

Durations (`40s`, `6m`, `36h`, `3d`, `1h30m`), ranges (`15..40`, `40s..6m`), weekday sets (`mon-fri`,
`sat`, `mon,wed,fri`), clock intervals (`09:00-12:30`), phone numbers (E.164) and timezone names. Each
parser raises ``ValueError`` with a message meant for the person who wrote the value; pydantic turns it
into an error located in the file. Each ``format_*`` writes a value back so that parsing it again gives
the same value (the property tests hold them to that).
"""

from __future__ import annotations

import difflib
import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import time, timedelta
from functools import lru_cache

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names in ISO order: index 0 is Monday, as ``date.weekday()`` counts."""

_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ALL_DAYS = frozenset(range(7))

MAX_DURATION = timedelta(days=3650)
"""Longer than any warm-up could mean; a larger duration is a typo (and would overflow timedelta)."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_HINT = "expected a duration like 40s, 6m, 36h or 3d (units ms s m h d w)"


def _checked_seconds(seconds: float, original: object) -> timedelta:
    if not math.isfinite(seconds):
        raise ValueError(f"{_DURATION_HINT}, got {original!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {original!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {original!r} is longer than {format_duration(MAX_DURATION)}")
    return timedelta(seconds=seconds)


def parse_duration(value: object) -> timedelta:
    """Parse ``40s``, ``6m``, ``36h``, ``3d``, ``1h30m`` (or a bare number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return _checked_seconds(value.total_seconds(), value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    if isinstance(value, int | float):
        return _checked_seconds(float(value), value)
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError(f"{_DURATION_HINT}, got an empty string")
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    return _checked_seconds(total, value)


def format_duration(delta: timedelta) -> str:
    """Write a timedelta back the way an author would: ``1h30m``, ``40s``, ``1s500ms`` (ms precision)."""
    millis = round(delta.total_seconds() * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def human_duration(delta: timedelta) -> str:
    """Write a timedelta for people, not for a plan: ``850 ms``, ``1.5 s``, ``40 s``, ``1 min 05 s``,
    ``27 min``, ``1 h 05 min``, ``2 d 3 h``.

    At most two units, rounded to the smaller one shown (so ``59.7 s`` is ``1 min``, never ``60 s``);
    seconds are shown next to minutes only under ten minutes, where they still matter. Not parsable as
    plan syntax: a value that must round-trip into a plan is written with `format_duration`.
    """
    seconds = delta.total_seconds()
    if seconds < 0:
        return "-" + human_duration(-delta)
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis} ms" if millis else "0 s"
    tenths = round(seconds * 10)
    if tenths < 100:
        return f"{tenths / 10:g} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 10:
        return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {rest:02d} min" if rest else f"{hours} h"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


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
            raise ValueError(f"range {value!r} ends before it starts (write the smaller duration first)")
        return DurationRange(low, high)
    one = parse_duration(value)
    return DurationRange(one, one)


def parse_int_range(value: object) -> tuple[int, int]:
    """Parse a volume: ``8`` (constant) or ``15..40`` (from 15 to 40 across the step's days)."""
    hint = f"expected a whole number or a range like 15..40, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(hint)
    if isinstance(value, int):
        return value, value
    if isinstance(value, float) and value.is_integer():
        return int(value), int(value)
    if isinstance(value, tuple | list) and len(value) == 2 and all(type(v) is int for v in value):
        return int(value[0]), int(value[1])
    if isinstance(value, str):
        low_text, sep, high_text = value.strip().partition("..")
        try:
            low = int(low_text)
            high = int(high_text) if sep else low
        except ValueError:
            raise ValueError(hint) from None
        return low, high
    raise ValueError(hint)


def format_int_range(value: tuple[int, int]) -> int | str:
    """Write a volume back: ``8`` when constant, ``"15..40"`` otherwise."""
    return value[0] if value[0] == value[1] else f"{value[0]}..{value[1]}"


def parse_day_span(value: object) -> tuple[int, int]:
    """Parse plan days of a ramp step: ``5`` or ``1-3`` (inclusive, 1-based)."""
    hint = f"expected a plan day like 4 or a span like 1-3, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(hint)
    if isinstance(value, tuple | list) and len(value) == 2 and all(type(v) is int for v in value):
        first, last = int(value[0]), int(value[1])
    elif isinstance(value, int):
        first, last = value, value
    elif isinstance(value, str):
        text = value.strip()
        first_text, sep, last_text = text.partition("..")
        if not sep:
            first_text, sep, last_text = text.partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if sep else first
        except ValueError:
            raise ValueError(hint) from None
    else:
        raise ValueError(hint)
    if first < 1:
        raise ValueError(f"plan days count from 1, got {value!r}")
    if last < first:
        raise ValueError(f"day span {value!r} ends before it starts")
    return first, last


def format_day_span(value: tuple[int, int]) -> str:
    """Write plan days back: ``"5"`` or ``"1-3"``."""
    return str(value[0]) if value[0] == value[1] else f"{value[0]}-{value[1]}"


def _weekday_index(name: str, whole: object) -> int:
    key = name.strip().lower()
    if key in WEEKDAYS:
        return WEEKDAYS.index(key)
    if key in _FULL_WEEKDAYS:
        return _FULL_WEEKDAYS.index(key)
    close = difflib.get_close_matches(key, WEEKDAYS + _FULL_WEEKDAYS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0][:3]!r}?" if close else ""
    raise ValueError(
        f"unknown weekday {name.strip()!r} in {whole!r}{hint} Use mon tue wed thu fri sat sun, "
        "a span like mon-fri, a list like mon,wed,fri, or daily"
    )


def parse_weekdays(value: object) -> frozenset[int]:
    """Parse ``mon-fri``, ``sat``, ``mon,wed,fri``, ``daily``/``all`` or a YAML list of those.

    A span wraps around the week (``fri-mon`` is fri sat sun mon). An empty list is the empty set,
    which callers reject where a day is required (a window) and accept where it is not (rest days).
    """
    if isinstance(value, frozenset | set) and all(isinstance(d, int) and 0 <= d < 7 for d in value):
        return frozenset(value)
    if isinstance(value, list | tuple | set | frozenset):
        days: set[int] = set()
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"expected weekday names like mon or sat, got {item!r}")
            days |= parse_weekdays(item)
        return frozenset(days)
    if not isinstance(value, str):
        raise ValueError(f"expected weekdays like mon-fri or sat, got {value!r}")
    text = value.strip().lower()
    if text in ("daily", "all", "every day", "everyday"):
        return _ALL_DAYS
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


def format_weekdays(days: frozenset[int]) -> str | list[str]:
    """Write a weekday set back compactly: ``mon-fri``, ``sat``, ``mon,wed``, ``daily``; ``[]`` if empty."""
    if not days:
        return []
    if days == _ALL_DAYS:
        return "daily"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}")
        else:
            parts.extend(WEEKDAYS[d] for d in run)
    return ",".join(parts)


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
    if isinstance(value, tuple | list) and len(value) == 2 and all(type(v) is int for v in value):
        start_minutes, end_minutes = int(value[0]), int(value[1])
        if not 0 <= start_minutes < end_minutes <= 1440:
            raise ValueError(f"expected minutes 0 <= start < end <= 1440, got {value!r}")
        return start_minutes, end_minutes
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


def format_hours(value: tuple[int, int]) -> str:
    """Write a clock interval back: ``09:00-12:30`` (``24:00`` for a window that runs to midnight)."""
    start, end = value
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def parse_phone(value: object) -> str:
    """Normalise a phone number to E.164 (``+5511999990001``); spaces, dashes, dots and parentheses go."""
    if not isinstance(value, str):
        raise ValueError(f"expected a phone number in E.164 form like +5511999990001, got {value!r}")
    compact = re.sub(r"[\s\-().]", "", value)
    if not _E164.fullmatch(compact):
        raise ValueError(
            f"{value!r} is not an E.164 phone number: a + then the country code and number, "
            "7 to 15 digits in all (e.g. +5511999990001)"
        )
    return compact


@lru_cache(maxsize=1)
def _timezone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(name: object) -> str:
    """Check an IANA timezone name (``America/Sao_Paulo``) and return it; suggests the nearest on a typo."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"expected an IANA timezone like America/Sao_Paulo, got {name!r}")
    text = name.strip()
    if text in _timezone_names():
        return text
    lowered = {zone.lower(): zone for zone in _timezone_names()}
    close = difflib.get_close_matches(text.lower(), lowered, n=1, cutoff=0.7)
    hint = f"; did you mean {lowered[close[0]]!r}?" if close else " (use an IANA name like Europe/Lisbon)"
    raise ValueError(f"unknown timezone {text!r}{hint}")


_UNCARRIABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 and C1 control characters (tab and line feed included: `check_text` lets them through where the
text may hold them) and UTF-16 surrogates, which are not characters at all when they stand alone."""

_CHARACTER_NAMES = {
    0x00: "a NUL character",
    0x09: "a tab",
    0x0A: "a line break",
    0x0D: "a carriage return",
    0x1B: "an escape character",
    0x7F: "a delete character",
}


def check_text(value: str, *, allow: str = "\t\n", what: str = "this text") -> str:
    """Refuse a hand-written text that the database or a provider cannot carry; return it unchanged.

    PostgreSQL cannot store a NUL, neither database nor a UTF-8 provider request can hold a lone
    surrogate (a YAML ``"\\ud800"``), and other control characters are invisible in a chat and refused
    or mangled by providers: one such text got through validation and stopped the planning of every
    number in its batch. ``allow`` names the whitespace controls the text may hold (a message may have
    tabs and line breaks; a name or a path none). The message names the character and its position
    (counting from 1), so the person can find it.
    """
    for match in _UNCARRIABLE.finditer(value):
        char = match.group()
        if char in allow:
            continue
        code = ord(char)
        where = f"(U+{code:04X}) at position {match.start() + 1}"
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(
                f"{what} contains a lone surrogate {where}: it is half of a UTF-16 pair, not a "
                "character, so it can be neither stored nor sent; write the character itself"
            )
        if code == 0:
            reason = "the database cannot store it"
        elif char == "\t":
            reason = "tabs are not allowed here"
        elif char == "\r" and "\n" in allow:
            reason = "end lines with a plain line break (U+000A)"
        elif char in "\n\r":
            reason = "it must be one line"
        else:
            reason = "control characters are invisible in a chat and providers refuse or mangle them"
        raise ValueError(
            f"{what} contains {_CHARACTER_NAMES.get(code, 'a control character')} {where}: {reason}"
        )
    return value


def escaped(text: str) -> str:
    """``text`` with every character `check_text` would refuse written as its escape (``\\x00``,
    ``\\ud800``): safe to store, log and print, such as an error message quoting a bad text."""
    return _UNCARRIABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
