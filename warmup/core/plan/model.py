"""The ramp plan as typed, validated data.

A plan file is YAML written by hand; these pydantic models are its single definition: the loader
validates against them (and locates every error in the file), `warmup plan schema` exports them as a
JSON Schema, and the pure core (ramp, risk, spread) reads them. Field types are in `fields`, the
cross-field check machinery in `checks`. All models are frozen and forbid
unknown keys, so a typo is an error rather than a silently ignored setting.

Checks that relate several fields (ramp steps that overlap, windows that fall on rest days, a ramp the
windows cannot carry) live here too, so a Plan built in code is as valid as one loaded from a file. They
run even when other fields of the same model are invalid, and report each problem at the field it is
about, so one `warmup plan validate` run shows every mistake in the file.
"""

from __future__ import annotations

import difflib
import math
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from warmup.core.plan.checks import Issue, Loc, days_text, field_of, items_of, lenient, validate_with_checks
from warmup.core.plan.fields import (
    MAX_DAILY_VOLUME,
    MAX_TYPING,
    DaySpan,
    Duration,
    DurationSpan,
    FilePath,
    FreeText,
    Hours,
    LevelMatch,
    QualityMatch,
    StatusMatch,
    TierMatch,
    Volume,
    Weekdays,
)
from warmup.core.plan.values import (
    WEEKDAYS,
    DurationRange,
    format_day_span,
    format_duration,
    format_hours,
    format_int_range,
    parse_day_span,
    parse_duration_range,
    parse_hours,
    parse_int_range,
    parse_weekdays,
)


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


def _schedule_issues(data: Any) -> list[Issue]:
    issues: list[Issue] = []
    rest = lenient(parse_weekdays, field_of(data, "rest_days")) or frozenset()
    if len(rest) == 7:
        issues.append((("rest_days",), "every day of the week is a rest day, so nothing is ever sent"))
    parsed: list[tuple[int, frozenset[int], tuple[int, int] | None]] = []
    for index, window in enumerate(items_of(field_of(data, "windows"))):
        days = lenient(parse_weekdays, field_of(window, "days"))
        hours = lenient(parse_hours, field_of(window, "hours"))
        if days is None:
            continue
        if not days:
            issues.append((("windows", index, "days"), "a window needs at least one weekday"))
            continue
        if days <= rest and len(rest) < 7:
            issues.append(
                (
                    ("windows", index, "days"),
                    f"every day of this window ({days_text(days)}) is a rest day, so it never sends; "
                    "change its days or schedule.rest_days",
                )
            )
            continue
        for other_index, other_days, other_hours in parsed:
            shared = (days & other_days) - rest
            if hours and other_hours and shared and hours[0] < other_hours[1] and other_hours[0] < hours[1]:
                issues.append(
                    (
                        ("windows", index, "hours"),
                        f"overlaps windows[{other_index}] ({format_hours(other_hours)}) on "
                        f"{days_text(frozenset(shared))}; merge the two windows or move one",
                    )
                )
        parsed.append((index, days, hours))
    return issues


class Schedule(_Model):
    windows: list[Window] = Field(min_length=1)
    rest_days: Weekdays = frozenset()

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _schedule_issues)

    def sending_days(self) -> frozenset[int]:
        """Weekdays (0 = Monday) on which some window is open and that are not rest days."""
        days: set[int] = set()
        for window in self.windows:
            days |= window.days
        return frozenset(days - self.rest_days)


def _step_issues(data: Any) -> list[Issue]:
    days = lenient(parse_day_span, field_of(data, "days"))
    volume = lenient(parse_int_range, field_of(data, "volume"))
    curve = field_of(data, "curve") or "linear"
    if volume is None:
        return []
    if curve == "exponential" and min(volume) == 0 and volume[0] != volume[1]:
        return [
            (
                ("volume",),
                f"an exponential curve cannot grow from or to 0 ({format_int_range(volume)}); "
                "start at 1 or use curve: linear",
            )
        ]
    if days is not None and days[0] == days[1] and volume[0] != volume[1]:
        return [
            (
                ("volume",),
                f"a one-day step cannot ramp from {volume[0]} to {volume[1]}; give it a span of days "
                "or one volume",
            )
        ]
    return []


class RampStep(_Model):
    """Volume for a span of plan days: constant, linear from..to, or exponential from..to."""

    days: DaySpan
    volume: Volume
    curve: Literal["linear", "exponential"] = "linear"

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _step_issues)

    @property
    def first_day(self) -> int:
        return self.days[0]

    @property
    def last_day(self) -> int:
        return self.days[1]


def _ramp_issues(data: Any) -> list[Issue]:
    """Steps must cover plan days 1..N in order, each day exactly once."""
    issues: list[Issue] = []
    steps = items_of(field_of(data, "steps"))
    spans = [lenient(parse_day_span, field_of(step, "days")) for step in steps]
    all_parsed = all(span is not None for span in spans)
    for index, span in enumerate(spans):
        if span is None:
            continue
        where: Loc = ("steps", index, "days")
        earlier = [(i, s) for i, s in enumerate(spans[:index]) if s is not None]
        overlapping = [(i, s) for i, s in earlier if span[0] <= s[1] and s[0] <= span[1]]
        if index == 0 and span[0] != 1:
            issues.append((where, f"the first step must start at plan day 1, not {span[0]}"))
        elif overlapping:
            i, s = overlapping[0]
            issues.append(
                (where, f"days {format_day_span(span)} overlap steps[{i}] (days {format_day_span(s)})")
            )
        elif earlier and span[0] < earlier[-1][1][0]:
            issues.append((where, "steps must be listed in plan-day order"))
        elif all_parsed and index > 0 and spans[index - 1] is not None:
            previous = spans[index - 1]
            assert previous is not None
            if span[0] > previous[1] + 1:
                gap = format_day_span((previous[1] + 1, span[0] - 1))
                verb = "days {} are" if "-" in gap else "day {} is"
                issues.append((where, f"plan {verb.format(gap)} not covered by any step"))
    return issues


class Ramp(_Model):
    steps: list[RampStep] = Field(min_length=1)
    after: Literal["hold", "stop"] = "hold"

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _ramp_issues)

    @property
    def peak_volume(self) -> int:
        return max(max(step.volume) for step in self.steps)


def _pacing_issues(data: Any) -> list[Issue]:
    issues: list[Issue] = []
    gap = lenient(parse_duration_range, field_of(data, "gap"))
    raw_typing = field_of(data, "typing")
    typing = lenient(parse_duration_range, raw_typing) if raw_typing is not None else Pacing.DEFAULT_TYPING
    if gap is not None and gap.low < timedelta(seconds=1):
        issues.append((("gap",), f"the shortest gap must be at least 1s, got {gap}"))
    if typing is not None and typing.high > MAX_TYPING:
        issues.append((("typing",), f"typing lasts at most {format_duration(MAX_TYPING)}, got {typing}"))
    elif typing is not None and gap is not None and gap.low >= timedelta(seconds=1) and typing.high > gap.low:
        issues.append(
            (
                ("typing",),
                f"typing up to {format_duration(typing.high)} is longer than the shortest gap "
                f"{format_duration(gap.low)} between two sends",
            )
        )
    return issues


class Pacing(_Model):
    DEFAULT_TYPING: ClassVar[DurationRange] = DurationRange(timedelta(seconds=2), timedelta(seconds=8))

    gap: DurationSpan
    typing: DurationSpan = DEFAULT_TYPING
    max_per_hour: int = Field(default=30, ge=1, le=3600)
    max_new_contacts_per_day: int = Field(default=10, ge=0, le=MAX_DAILY_VOLUME)

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _pacing_issues)


class Peers(_Model):
    reply_probability: float = Field(default=0.7, ge=0, le=1)
    reply_delay: DurationSpan = DurationRange(timedelta(minutes=1), timedelta(minutes=20))


class Audience(_Model):
    """Who the number talks to: its fleet peers, a contacts file, or both."""

    peers: Peers | None = None
    contacts: FilePath | None = Field(
        default=None, description="CSV file of contacts (phone,name), relative to the plan file"
    )


def _condition_issues(data: Any) -> list[Issue]:
    if isinstance(data, dict | BaseModel) and all(field_of(data, f) is None for f in Condition.model_fields):
        return [
            (
                (),
                "name at least one factor: overall, lifetime, response_rate, contacts "
                "(risk meter) or quality, status, tier (Meta Cloud API)",
            )
        ]
    return []


class Condition(_Model):
    """Matches a reading when every factor named matches (a value or a list of values).

    `quality`, `status` and `tier` are what Meta says about a Cloud API number; a reading without
    them (a Whapi or local meter) never matches a condition that names them.
    """

    overall: LevelMatch = None
    lifetime: LevelMatch = None
    response_rate: LevelMatch = None
    contacts: LevelMatch = None
    quality: QualityMatch = None
    status: StatusMatch = None
    tier: TierMatch = None

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _condition_issues)


ActionKind = Literal["pause", "hold", "throttle", "step_back", "cap", "max_new_contacts"]
ACTION_KINDS: tuple[str, ...] = ("pause", "hold", "throttle", "step_back", "cap", "max_new_contacts")
_BARE_KINDS = ("pause", "hold")


def _unknown_kind(kind: object) -> ValueError:
    close = difflib.get_close_matches(str(kind), ACTION_KINDS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"unknown action {kind!r}{hint} Actions: pause, hold, {{throttle: 0.5}}, {{step_back: 2}}, "
        "{cap: 50}, {max_new_contacts: 3}"
    )


def _parse_do(value: Any) -> Any:
    """`do: pause` / `do: {cap: 50}` -> RiskAction fields; the long form {kind, value} passes through."""
    if isinstance(value, str):
        if value not in ACTION_KINDS:
            raise _unknown_kind(value)
        return {"kind": value}
    if isinstance(value, dict) and "kind" not in value:
        if len(value) != 1:
            raise ValueError(f"one action per rule, got {len(value)}: {', '.join(map(str, value))}")
        ((kind, arg),) = value.items()
        if kind not in ACTION_KINDS:
            raise _unknown_kind(kind)
        return {"kind": kind, "value": arg}
    return value


def _action_issues(data: Any) -> list[Issue]:
    kind, value = field_of(data, "kind"), field_of(data, "value")
    if kind in _BARE_KINDS:
        return [((), f"{kind} takes no value; write `do: {kind}`")] if value is not None else []
    if kind not in ACTION_KINDS:
        return []
    if value is None:
        example = {"throttle": "0.5", "step_back": "2", "cap": "50", "max_new_contacts": "3"}[kind]
        return [((), f"{kind} needs a value, e.g. `do: {{{kind}: {example}}}`")]
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "throttle":
        if number is None or not 0 < number < 1:
            return [
                ((), f"throttle keeps a fraction of the volume, between 0 and 1 (e.g. 0.5), got {value!r}")
            ]
        return []
    whole = number is not None and math.isfinite(number) and float(number).is_integer()
    least = 1 if kind == "step_back" else 0
    if not whole or number is None or number < least or number > MAX_DAILY_VOLUME:
        what = "plan days to go back" if kind == "step_back" else "messages"
        return [((), f"{kind} takes a whole number of {what} >= {least}, got {value!r}")]
    return []


class RiskAction(_Model):
    """What a rule does; exactly one kind, with a value where the kind takes one."""

    kind: ActionKind
    value: int | float | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _action_issues)


def _dump_do(action: RiskAction) -> str | dict[str, int | float]:
    if action.value is None:
        return action.kind
    value = action.value
    if action.kind != "throttle" and float(value).is_integer():
        value = int(value)
    return {action.kind: value}


RiskDo = Annotated[
    RiskAction,
    BeforeValidator(_parse_do),
    PlainSerializer(_dump_do, return_type=str | dict[str, int | float]),
    WithJsonSchema(
        {
            "oneOf": [
                {"enum": list(_BARE_KINDS)},
                {
                    "type": "object",
                    "properties": {
                        "throttle": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
                    },
                    "required": ["throttle"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"step_back": {"type": "integer", "minimum": 1}},
                    "required": ["step_back"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"cap": {"type": "integer", "minimum": 0, "maximum": MAX_DAILY_VOLUME}},
                    "required": ["cap"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {
                        "max_new_contacts": {"type": "integer", "minimum": 0, "maximum": MAX_DAILY_VOLUME}
                    },
                    "required": ["max_new_contacts"],
                    "additionalProperties": False,
                },
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


MeterChoice = Literal["provider", "local", "provider_or_local"]


class Risk(_Model):
    meter: MeterChoice = Field(
        default="provider_or_local",
        description=(
            "Where a number's daily risk reading comes from. provider: the provider's meter only (Whapi "
            "riskOfBlocking); when it fails no reading is taken and the day is decided on the last one "
            "stored, which stale_after judges. local: never ask the provider; the local meter computes "
            "the factors from our own sends and replies. provider_or_local: the provider's meter, and "
            "when it fails the local meter, the failure recorded with the reading (warmup why, doctor, "
            "the warmup_meter_failures_total metric)."
        ),
    )
    stale_after: Duration = timedelta(hours=36)
    rules: list[Rule] = Field(default_factory=list)
    resume: Resume = Resume()


def _hours_touched(window: Window) -> int:
    """Clock hours a window reaches into: an hourly cap allows at most that many x max_per_hour sends."""
    return math.ceil(window.end_minute / 60) - window.start_minute // 60


def day_capacity(plan: Plan, weekday: int) -> tuple[int, str]:
    """The most sends one weekday's windows can hold under the pacing (hourly cap and shortest gap).

    Returns the capacity and which limit binds ("max_per_hour" or "gap"). It is an upper bound: the
    scheduler draws random gaps, so a quota near it may still be cut.
    """
    if weekday in plan.schedule.rest_days:
        return 0, "max_per_hour"
    by_hour = by_gap = 0
    gap_seconds = max(plan.pacing.gap.low.total_seconds(), 1.0)
    for window in plan.schedule.windows:
        if weekday in window.days:
            by_hour += _hours_touched(window) * plan.pacing.max_per_hour
            by_gap += int((window.end_minute - window.start_minute) * 60 // gap_seconds) + 1
    return (by_hour, "max_per_hour") if by_hour <= by_gap else (by_gap, "gap")


def _plan_issues(data: Any) -> list[Issue]:
    if not isinstance(data, Plan):
        return []  # other errors come first; these checks need a plan that is otherwise valid
    issues: list[Issue] = []
    if data.audience.peers is None and data.audience.contacts is None:
        issues.append((("audience",), "name peers, contacts or both; otherwise there is nobody to send to"))
    sending = sorted(data.schedule.sending_days())
    if sending:
        capacity, limit, weekday = max((*day_capacity(data, day), day) for day in sending)
        peak = data.ramp.peak_volume
        if peak > capacity:
            step = next(i for i, s in enumerate(data.ramp.steps) if max(s.volume) == peak)
            fix = "raise max_per_hour" if limit == "max_per_hour" else "shorten the gap"
            issues.append(
                (
                    ("pacing", limit),
                    f"ramp.steps[{step}] asks for {peak} messages a day, but the busiest day "
                    f"({WEEKDAYS[weekday]}) fits at most {capacity} under this pacing; {fix}, widen the "
                    "windows or lower the volume",
                )
            )
    return issues


class Plan(_Model):
    """A whole ramp plan, as written in one YAML file."""

    version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: FreeText = Field(default="", max_length=2000)
    schedule: Schedule
    ramp: Ramp
    pacing: Pacing
    audience: Audience = Audience(peers=Peers())
    content: FilePath | None = Field(default=None, description="message pool file, relative to the plan file")
    risk: Risk = Risk()

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _plan_issues)

    @property
    def last_plan_day(self) -> int:
        return max(step.last_day for step in self.ramp.steps)
