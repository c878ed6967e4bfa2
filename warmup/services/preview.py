"""Preview a plan: replay its ramp day by day under a risk scenario, as a table and a chart.

The simulation calls the real `warmup.core.ramp.decide` once per local day at local midnight, assumes every
sending day sends its whole quota (and fails the share the scenario says), and takes the day's reading
from the scenario. A risk rule's pause pauses the number; in a preview the pause expires after the
scenario's ``pause_days`` so the resume policy shows.

Scenario file (YAML), days counted from the first previewed day (1 = ``--start``)::

    name: flaky-replies            # optional, shown in the title
    description: Replies dry up in week two.
    pause_days: 3                  # a risk pause expires after this many days; null = stays paused
    default: {response_rate: 3, contacts: 3}
    days:                          # applied in order; a later entry overrides the factors it names
      - {days: 6-11, response_rate: 1}
      - {days: 9, contacts: 1, failed: 0.5}
      - {days: 12, overall: 1}
      - {days: 14-15, missing: true}

Each entry (and ``default``) may name ``overall``, ``lifetime``, ``response_rate`` and ``contacts``
(1..3), ``missing: true`` (no reading that day: the last one ages and turns stale) and ``failed`` (the
share 0..1 of that day's sends that fail). Factors nobody names: ``lifetime`` follows the number's age
(the local meter's thresholds, from ``--registered``), ``response_rate`` and ``contacts`` are 3, and
``overall`` is combined from the others as the local meter does (`warmup.core.risk.overall_level`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from warmup.core.domain import Action, DayOutcome, Decision, NumberState, Reading
from warmup.core.errors import UserError
from warmup.core.plan.fields import DaySpan, Level
from warmup.core.plan.model import Plan
from warmup.core.ramp import decide, is_sending_weekday, plan_volume, resumed_state, state_after
from warmup.core.risk import lifetime_level, overall_level
from warmup.files.loader import load_yaml_model

BUILTIN_SCENARIOS: tuple[str, ...] = ("good", "mixed", "bad")
MAX_PREVIEW_DAYS = 366


class Levels(BaseModel):
    """What one scenario day (or the default) says about the reading and the sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overall: Level | None = None
    lifetime: Level | None = None
    response_rate: Level | None = None
    contacts: Level | None = None
    missing: bool = False
    failed: float | None = Field(default=None, ge=0, le=1, description="share of the day's sends that fail")


class ScenarioDays(Levels):
    days: DaySpan


class Scenario(BaseModel):
    """Readings per previewed day; see the module docstring for the file format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    description: str = ""
    pause_days: int | None = Field(default=3, ge=1, le=MAX_PREVIEW_DAYS)
    default: Levels = Levels()
    days: list[ScenarioDays] = Field(default_factory=list)

    def levels(self, index: int) -> Levels:
        """The merged levels of previewed day ``index`` (1-based)."""
        merged: dict[str, Any] = dict(self.default.model_dump(exclude_unset=True))
        for entry in self.days:
            if entry.days[0] <= index <= entry.days[1]:
                merged.update({key: getattr(entry, key) for key in entry.model_fields_set if key != "days"})
        return Levels.model_validate(merged)


def builtin_scenario(name: str, days: int, rng: random.Random) -> Scenario:
    """The scenarios `warmup plan preview` knows by name; ``rng`` only shapes ``mixed``."""
    if name == "good":
        return Scenario(
            name="good",
            description="every reading good; lifetime follows the number's age",
            default=Levels(overall=3, response_rate=3, contacts=3),
        )
    if name == "mixed":
        entries: list[ScenarioDays] = []
        for index in range(1, days + 1):
            response_rate = 2 if rng.random() < 0.25 else 3
            contacts = 2 if rng.random() < 0.2 else 3
            missing = rng.random() < 0.08
            if response_rate != 3 or contacts != 3 or missing:
                entries.append(
                    ScenarioDays(
                        days=(index, index), response_rate=response_rate, contacts=contacts, missing=missing
                    )
                )
        return Scenario(
            name="mixed",
            description="mostly good, some days needing attention and a few missing readings (seeded)",
            days=entries,
        )
    if name == "bad":
        return Scenario(
            name="bad",
            description="replies dry up from day 6, contacts from day 9, overall 1 on day 12 (4-day pause)",
            pause_days=4,
            default=Levels(response_rate=3, contacts=3),
            days=[
                ScenarioDays(days=(6, 11), response_rate=1, overall=2),
                ScenarioDays(days=(9, 12), contacts=1),
                ScenarioDays(days=(12, 12), response_rate=1, overall=1),
                ScenarioDays(days=(20, 20), response_rate=2),
                ScenarioDays(days=(23, 24), missing=True),
            ],
        )
    raise UserError(f"unknown scenario {name!r}: use {', '.join(BUILTIN_SCENARIOS)} or a YAML file")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every problem is reported with where it is."""

    return load_yaml_model(path, Scenario)


def resolve_scenario(spec: str, days: int, rng: random.Random) -> Scenario:
    """A built-in scenario by name, otherwise a scenario file."""
    if spec in BUILTIN_SCENARIOS:
        return builtin_scenario(spec, days, rng)
    if not Path(spec).is_file():
        raise UserError(f"unknown scenario {spec!r}: use {', '.join(BUILTIN_SCENARIOS)} or a YAML file")
    return load_scenario(spec)


@dataclass(frozen=True)
class PreviewDay:
    index: int  # 1 = the first previewed day
    local_date: date
    decision: Decision
    reading: Reading | None  # the latest reading decide saw (an old one on a day whose reading is missing)
    fresh_reading: bool  # a reading was taken this day
    ideal_volume: int  # the plan's own curve: its volume if every sending day so far had advanced


@dataclass(frozen=True)
class Preview:
    plan_name: str
    scenario: Scenario
    timezone: str
    registered: date
    days: tuple[PreviewDay, ...]


def zone_for(timezone: str) -> ZoneInfo:
    """The IANA zone, or a UserError naming the bad one."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"unknown timezone {timezone!r}: use an IANA name like America/Sao_Paulo") from None


def _scenario_reading(levels: Levels, age_days: int, taken_at: datetime) -> Reading:
    lifetime = levels.lifetime if levels.lifetime is not None else lifetime_level(age_days)
    response_rate = levels.response_rate if levels.response_rate is not None else 3
    contacts = levels.contacts if levels.contacts is not None else 3
    overall = (
        levels.overall if levels.overall is not None else overall_level(lifetime, response_rate, contacts)
    )
    return Reading(overall, lifetime, response_rate, contacts, taken_at, source="scenario")


def _outcome(decision: Decision, failed_share: float | None) -> DayOutcome:
    failed = math.floor(decision.quota * (failed_share or 0.0) + 0.5)
    return DayOutcome(planned=decision.quota, sent=decision.quota - failed, failed=failed)


def simulate(
    plan: Plan,
    scenario: Scenario,
    *,
    start: date,
    days: int = 30,
    registered: date | None = None,
    timezone: str = "UTC",
) -> Preview:
    """Run `decide` for ``days`` local days from ``start`` under ``scenario``."""
    if not 1 <= days <= MAX_PREVIEW_DAYS:
        raise UserError(f"--days must be between 1 and {MAX_PREVIEW_DAYS}, got {days}")
    zone = zone_for(timezone)
    registered = registered if registered is not None else start
    state = NumberState(registered=registered)
    reading: Reading | None = None
    yesterday: DayOutcome | None = None
    paused_until: date | None = None
    ideal_day = 1
    rows: list[PreviewDay] = []
    for index in range(1, days + 1):
        local_date = start + timedelta(days=index - 1)
        now = datetime.combine(local_date, time(0, 0), tzinfo=zone).astimezone(UTC)
        if state.paused and paused_until is not None and local_date >= paused_until:
            state = resumed_state(state, local_date)
            paused_until = None
        levels = scenario.levels(index)
        if not levels.missing:
            reading = _scenario_reading(levels, (local_date - registered).days, now)
        decision = decide(plan, state, reading, yesterday, local_date, now)
        if decision.action is Action.PAUSE and not state.paused and scenario.pause_days is not None:
            paused_until = local_date + timedelta(days=scenario.pause_days)
        ideal = plan_volume(plan, ideal_day)
        rows.append(PreviewDay(index, local_date, decision, reading, not levels.missing, ideal or 0))
        if is_sending_weekday(plan, local_date) and ideal is not None:
            ideal_day += 1
        state = state_after(state, decision)
        yesterday = _outcome(decision, levels.failed)
    return Preview(plan.name, scenario, timezone, registered, tuple(rows))
