"""The ramp plan as typed, validated data.

A plan file is YAML written by hand; these pydantic models are its single definition: the loader
validates against them (and locates every error in the file), `warmup plan schema` exports them as a
JSON Schema, and the pure core (ramp, risk, schedule) reads them. All models are frozen and forbid
unknown keys, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from warmup.plan.values import (
    DurationRange,
    format_duration,
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

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$", "examples": ["40s", "36h"]}),
]
DurationSpan = Annotated[
    DurationRange,
    BeforeValidator(parse_duration_range),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["40s..6m", "2s..8s"]}),
]
Weekdays = Annotated[
    frozenset[int],
    BeforeValidator(parse_weekdays),
    PlainSerializer(format_weekdays, return_type=str),
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
    PlainSerializer(lambda v: f"{v[0] // 60:02d}:{v[0] % 60:02d}-{v[1] // 60:02d}:{v[1] % 60:02d}", return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}(:\d{2})?-\d{1,2}(:\d{2})?$", "examples": ["09:00-12:30"]}),
]
DaySpan = Annotated[
    tuple[int, int],
    BeforeValidator(parse_day_span),
    PlainSerializer(lambda v: str(v[0]) if v[0] == v[1] else f"{v[0]}-{v[1]}", return_type=str),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "examples": ["1-3"]}]}),
]
Volume = Annotated[
    tuple[int, int],
    BeforeValidator(parse_int_range),
    PlainSerializer(lambda v: v[0] if v[0] == v[1] else f"{v[0]}..{v[1]}", return_type=int | str),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "examples": ["15..40"]}]}),
]
Level = Annotated[int, Field(ge=1, le=3, description="risk-meter value: 1 use caution, 2 needs attention, 3 good")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Model):
    """Local hours on some weekdays during which messages may go out."""

    days: Weekdays
    hours: Hours

    @property
    def start_minute(self) -> int:
        return self.hours[0]

    @property
    def end_minute(self) -> int:
        """Minutes after local midnight; 1440 means the window runs to midnight."""
        return self.hours[1]


class Schedule(_Model):
    windows: list[Window] = Field(min_length=1)
    rest_days: Weekdays = frozenset()


class RampStep(_Model):
    """Volume for a span of plan days: constant, linear from..to, or exponential from..to."""

    days: DaySpan
    volume: Volume
    curve: Literal["linear", "exponential"] = "linear"

    @property
    def first_day(self) -> int:
        return self.days[0]

    @property
    def last_day(self) -> int:
        return self.days[1]


class Ramp(_Model):
    steps: list[RampStep] = Field(min_length=1)
    after: Literal["hold", "stop"] = "hold"


class Pacing(_Model):
    gap: DurationSpan
    typing: DurationSpan = DurationRange(timedelta(seconds=2), timedelta(seconds=8))
    max_per_hour: int = Field(default=30, ge=1, le=3600)
    max_new_contacts_per_day: int = Field(default=10, ge=0, le=MAX_DAILY_VOLUME)


class Peers(_Model):
    reply_probability: float = Field(default=0.7, ge=0, le=1)
    reply_delay: DurationSpan = DurationRange(timedelta(minutes=1), timedelta(minutes=20))


class Audience(_Model):
    peers: Peers | None = None
    contacts: str | None = Field(default=None, description="CSV file of contacts, relative to the plan file")


class Condition(_Model):
    """Matches a reading when every factor named matches (a value or a list of values)."""

    overall: Level | list[Level] | None = None
    lifetime: Level | list[Level] | None = None
    response_rate: Level | list[Level] | None = None
    contacts: Level | list[Level] | None = None


class RiskAction(_Model):
    """What a rule does; exactly one kind, with a value where the kind takes one."""

    kind: Literal["pause", "hold", "throttle", "step_back", "cap", "max_new_contacts"]
    value: float | None = None


def _parse_do(value: Any) -> Any:
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and len(value) == 1 and "kind" not in value:
        ((kind, arg),) = value.items()
        return {"kind": kind, "value": arg}
    return value


RiskDo = Annotated[
    RiskAction,
    BeforeValidator(_parse_do),
    WithJsonSchema(
        {
            "oneOf": [
                {"enum": ["pause", "hold"]},
                {"type": "object", "properties": {"throttle": {"type": "number", "exclusiveMinimum": 0,
                                                               "exclusiveMaximum": 1}},
                 "required": ["throttle"], "additionalProperties": False},
                {"type": "object", "properties": {"step_back": {"type": "integer", "minimum": 1}},
                 "required": ["step_back"], "additionalProperties": False},
                {"type": "object", "properties": {"cap": {"type": "integer", "minimum": 0}},
                 "required": ["cap"], "additionalProperties": False},
                {"type": "object", "properties": {"max_new_contacts": {"type": "integer", "minimum": 0}},
                 "required": ["max_new_contacts"], "additionalProperties": False},
            ]
        }
    ),
]


class Rule(_Model):
    when: Condition
    do: RiskDo


class Resume(_Model):
    """After a pause, re-enter at `at` x the last volume and climb back to the plan over `over`."""

    at: float = Field(default=0.5, gt=0, le=1)
    over: Duration = timedelta(days=3)


class Risk(_Model):
    stale_after: Duration = timedelta(hours=36)
    rules: list[Rule] = Field(default_factory=list)
    resume: Resume = Resume()


class Plan(_Model):
    """A whole ramp plan, as written in one YAML file."""

    version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    schedule: Schedule
    ramp: Ramp
    pacing: Pacing
    audience: Audience = Audience()
    content: str | None = Field(default=None, description="message pool file, relative to the plan file")
    risk: Risk = Risk()

    @property
    def last_plan_day(self) -> int:
        return max(step.last_day for step in self.ramp.steps)
