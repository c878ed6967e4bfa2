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
    StringConstraints,
    WithJsonSchema,
)

from warmup.core.plan.values import (
    DurationRange,
    check_text,
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


def storable(allow: str = "\t\n", what: str = "this text") -> BeforeValidator:
    """`check_text` on a text as written, before pydantic's own checks: pydantic refuses a lone
    surrogate too, but with "unable to parse raw data as a unicode string" and no position. Put it
    last in an ``Annotated`` (it then runs first); other values pass to the type's own check."""

    def check(value: Any) -> Any:
        return check_text(value, allow=allow, what=what) if isinstance(value, str) else value

    return BeforeValidator(check)


FreeText = Annotated[str, storable()]
"""Text written for people (a description): tabs and line breaks, but nothing the database cannot store
or a terminal would act on (`check_text`)."""
FilePath = Annotated[str, StringConstraints(min_length=1), storable(allow="", what="the path")]
"""A file name relative to the plan: one line, no control character (a NUL cannot even be opened)."""

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

QUALITIES: tuple[str, ...] = ("green", "yellow", "red")
"""Meta's quality rating of a Cloud API number, as plans name it (Meta's High, Medium, Low)."""
QUALITY_ALIASES: dict[str, str] = {"high": "green", "medium": "yellow", "low": "red"}
STATUSES: tuple[str, ...] = (
    "connected",
    "flagged",
    "restricted",
    "rate_limited",
    "pending",
    "disconnected",
    "banned",
)
"""Meta's status of a Cloud API number (`status` of the phone number), as plans name it."""
TIERS: tuple[str, ...] = (
    "TIER_50",
    "TIER_250",
    "TIER_1K",
    "TIER_2K",
    "TIER_10K",
    "TIER_100K",
    "TIER_UNLIMITED",
)
"""Meta messaging limits (unique business-initiated recipients in a moving 24 h), smallest first: the
v23 spec's `messaging_limit_tier` values plus TIER_2K, which Meta's current limits use."""


def _words(
    value: Any,
    known: tuple[str, ...],
    what: str,
    *,
    upper: bool = False,
    aliases: dict[str, str] | None = None,
) -> Any:
    """One word or a list of them, each one of `known` (case-insensitive), normalised."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"list at least one {what}: {', '.join(known)}")
    normalised: list[str] = []
    for item in items:
        text = str(item).strip() if isinstance(item, str | int) and not isinstance(item, bool) else None
        word = None if text is None else (text.upper() if upper else text.lower())
        if word is not None and upper and not word.startswith("TIER_"):
            word = "TIER_" + word
        word = (aliases or {}).get(word or "", word)
        if word not in known:
            raise ValueError(f"{what} must be one of {', '.join(known)}, got {item!r}")
        normalised.append(word)
    return normalised


def _check_quality(value: Any) -> Any:
    return _words(value, QUALITIES, "quality", aliases=QUALITY_ALIASES)


def _check_status(value: Any) -> Any:
    return _words(value, STATUSES, "status")


def _check_tier(value: Any) -> Any:
    return _words(value, TIERS, "tier", upper=True)


def _words_schema(known: tuple[str, ...], description: str) -> WithJsonSchema:
    word = {"type": "string", "enum": list(known)}
    return WithJsonSchema(
        {"anyOf": [word, {"type": "array", "items": word, "minItems": 1}], "description": description}
    )


QualityMatch = Annotated[
    list[str] | None,
    BeforeValidator(_check_quality),
    _words_schema(QUALITIES, "Meta quality rating: green (high), yellow (medium), red (low); or a list"),
]
StatusMatch = Annotated[
    list[str] | None,
    BeforeValidator(_check_status),
    _words_schema(STATUSES, "Meta phone number status: flagged, restricted, ...; or a list"),
]
TierMatch = Annotated[
    list[str] | None,
    BeforeValidator(_check_tier),
    _words_schema(TIERS, "Meta messaging limit: TIER_250, TIER_1K, ...; or a list"),
]
