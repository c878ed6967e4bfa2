"""The plan's field types: each small value language (durations, ranges, weekdays, hours, levels, phones,
time zones) as an annotated type that parses the hand-written text, refuses what is out of bounds, and
writes it back the same way (`warmup.core.plan.values` holds the parsers).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from warmup.core.plan.values import (
    DurationRange,
    format_day_span,
    format_duration,
    format_hours,
    format_int_range,
    format_weekdays,
    parse_day_span,
    parse_duration,
    parse_duration_range,
    parse_hours,
    parse_int_range,
    parse_weekdays,
)

MAX_DAILY_VOLUME = 10_000
"""No warm-up sends more than this per number and day; a larger volume is a typo, not a plan."""

MAX_PLAN_DAYS = 366

MAX_TYPING = timedelta(seconds=60)
"""The longest typing simulation the send API accepts (Whapi `typing_time` maximum)."""


def _check_volume(value: tuple[int, int]) -> tuple[int, int]:
    for end in value:
        if end < 0:
            raise ValueError(f"a volume cannot be negative, got {format_int_range(value)}")
        if end > MAX_DAILY_VOLUME:
            raise ValueError(
                f"volume {end} is more than {MAX_DAILY_VOLUME} messages a day; no warm-up sends that much"
            )
    return value


def _check_plan_days(value: tuple[int, int]) -> tuple[int, int]:
    if value[1] > MAX_PLAN_DAYS:
        raise ValueError(f"a plan lasts at most {MAX_PLAN_DAYS} days, got day {value[1]}")
    return value


def _check_levels(value: Any) -> Any:
    """Risk levels are 1..3, as one value or a list; one clear message instead of a union's three."""
    items = value if isinstance(value, list) else [value]
    if value is None:
        return value
    if isinstance(value, list) and not value:
        raise ValueError("list at least one risk level (1, 2 or 3)")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 3:
            raise ValueError(
                f"risk levels are 1 (use caution), 2 (needs attention) or 3 (good), got {item!r}"
            )
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$"},
                {"type": "number", "minimum": 0},
            ],
            "examples": ["40s", "36h", "1h30m"],
        }
    ),
]
DurationSpan = Annotated[
    DurationRange,
    BeforeValidator(parse_duration_range),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}],
            "description": "a duration range low..high, or one duration",
            "examples": ["40s..6m", "2s..8s"],
        }
    ),
]
Weekdays = Annotated[
    frozenset[int],
    BeforeValidator(parse_weekdays),
    PlainSerializer(format_weekdays, return_type=str | list[str]),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "examples": ["mon-fri", "sat", "mon,wed,fri", "daily"]},
                {"type": "array", "items": {"type": "string"}},
            ]
        }
    ),
]
Hours = Annotated[
    tuple[int, int],
    BeforeValidator(parse_hours),
    PlainSerializer(format_hours, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*\d{1,2}(:\d{2})?\s*-\s*\d{1,2}(:\d{2})?\s*$",
            "examples": ["09:00-12:30"],
        }
    ),
]
DaySpan = Annotated[
    tuple[int, int],
    BeforeValidator(parse_day_span),
    AfterValidator(_check_plan_days),
    PlainSerializer(format_day_span, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_PLAN_DAYS},
                {"type": "string", "pattern": r"^\s*\d+\s*((-|\.\.)\s*\d+\s*)?$", "examples": ["1-3"]},
            ]
        }
    ),
]
Volume = Annotated[
    tuple[int, int],
    BeforeValidator(parse_int_range),
    AfterValidator(_check_volume),
    PlainSerializer(format_int_range, return_type=int | str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_DAILY_VOLUME},
                {"type": "string", "pattern": r"^\s*\d+\s*(\.\.\s*\d+\s*)?$", "examples": ["15..40"]},
            ]
        }
    ),
]
Level = Annotated[
    int, Field(ge=1, le=3, description="risk-meter value: 1 use caution, 2 needs attention, 3 good")
]
LevelMatch = Annotated[Level | list[Level] | None, BeforeValidator(_check_levels)]
