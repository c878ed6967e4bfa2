"""Re-judging a planned day when a reading arrives after it was decided (a Meta quality webhook).

Pure: no clock, no I/O. The plan's risk rules judge the new reading as `warmup.core.ramp.decide` would
(`ramp.rule_effects`), against what the day has now: a result more restrictive than the day's applies
at once (a pause pauses the number; a throttle, cap, hold or step-back lowers the rest of the day's
quota and keeps the ramp from advancing), one that is not changes nothing. A quota is never raised
mid-day: a better reading waits for the next day's decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from warmup.core.domain import RESTRICTIVENESS, Action, NumberState, Reading, Reason
from warmup.core.plan.model import Plan
from warmup.core.ramp import RuleEffect, rule_effects

RULE = "signal"
"""The `Reason.rule` of a re-judgement, as the day's reasons record it."""

_VERBS: dict[Action, str] = {
    Action.CAP: "capped",
    Action.THROTTLE: "throttled",
    Action.STEP_BACK: "stepped back",
    Action.HOLD: "held",
    Action.PAUSE: "paused",
}


@dataclass(frozen=True)
class DayNow:
    """What a planned day has now: its stored decision (after any cut) and whether the number is paused."""

    action: Action
    quota: int
    plan_day: int
    next_plan_day: int
    plan_volume: int
    paused: bool = False


@dataclass(frozen=True)
class Rejudged:
    """The day after a re-judgement. `changed` False: nothing stricter than what the day had (the
    reason says so, and the day stays as it was)."""

    action: Action  # the day's action: the most restrictive of the day's and the rules'
    quota: int  # never above the day's
    next_plan_day: int
    pause: bool  # pause the number now
    reason: Reason
    changed: bool


def rejudge(plan: Plan, day: DayNow, reading: Reading, last_volume: int) -> Rejudged:
    """The plan's rules on ``reading`` against ``day``; ``last_volume`` is the volume of the last sending
    day before it (what a hold holds at; 0: none)."""
    state = NumberState(plan_day=day.plan_day, last_volume=last_volume)
    effects = [
        effect
        for effect in rule_effects(plan, state, reading, day.plan_day, day.plan_volume)
        if effect.reason.binding and effect.reason.action is not Action.ADVANCE
    ]
    when = f"at {reading.taken_at.astimezone(UTC):%H:%M} UTC by {reading.source}"
    pausing = [e for e in effects if e.reason.action is Action.PAUSE]
    if pausing:
        return _paused(day, pausing[0], f"{_said(pausing[0])} {when}")
    limits = [e.limit for e in effects if e.limit is not None]
    quota = min([day.quota, *limits])
    action = max([day.action, *(e.reason.action for e in effects)], key=RESTRICTIVENESS.__getitem__)
    stricter = quota < day.quota or RESTRICTIVENESS[action] > RESTRICTIVENESS[day.action]
    if not effects or not stricter:
        head = f"{_signals(reading)} {when}"
        text = f"{head}: no rule matches" if not effects else f"{head}: {_rules(effects)}, no stricter than"
        if effects:
            text += f" today's {day.action} (quota {day.quota})"
        text += "; the day stays as it is"
        return Rejudged(
            day.action, day.quota, day.next_plan_day, False, Reason(RULE, day.action, text, False), False
        )
    step_backs = [e.plan_day for e in effects if e.plan_day is not None]
    next_plan_day = min([day.next_plan_day, day.plan_day, *step_backs])
    deciding = next(e for e in effects if e.reason.action is action) if quota == day.quota else None
    deciding = deciding or min(effects, key=lambda e: e.limit if e.limit is not None else day.quota)
    head = f"{_said(deciding)} {when}"
    verb = _VERBS.get(deciding.reason.action, str(deciding.reason.action))
    if deciding.plan_day is not None:
        verb += f" to plan day {deciding.plan_day}"
    change = f"quota {day.quota} -> {quota}" if quota < day.quota else f"quota stays {day.quota}"
    text = f"{head}: {verb}, {change}, the plan day does not advance ({_rules(effects)})"
    return Rejudged(action, quota, next_plan_day, False, Reason(RULE, action, text), True)


def _paused(day: DayNow, effect: RuleEffect, head: str) -> Rejudged:
    rule = _rules([effect])
    if day.paused:
        text = f"{head}: {rule}, the number is paused already"
        reason = Reason(RULE, Action.PAUSE, text, False)
        return Rejudged(day.action, day.quota, day.next_plan_day, False, reason, False)
    text = f"{head}: paused, nothing more is sent until resumed ({rule})"
    reason = Reason(RULE, Action.PAUSE, text)
    return Rejudged(day.action, day.quota, min(day.next_plan_day, day.plan_day), True, reason, True)


def _signals(reading: Reading) -> str:
    """What Meta says in the reading (``quality yellow, status flagged``), else its factors."""
    said = [f"{name} {value}" for name in ("quality", "status", "tier") if (value := reading.signal(name))]
    if said:
        return ", ".join(said)
    return f"overall {reading.overall}, response {reading.response_rate}, contacts {reading.contacts}"


def _said(effect: RuleEffect) -> str:
    """What a rule matched, in words: ``quality=yellow`` -> ``quality yellow``."""
    return effect.matched.replace("=", " ")


def _rules(effects: list[RuleEffect]) -> str:
    """The rules as their reasons name them: ``risk.rules[2] quality=yellow -> throttle 0.5``."""
    return "; ".join(e.reason.text.split(":", 1)[0] for e in effects)
