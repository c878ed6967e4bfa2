"""The ramp engine: how many messages one number may send on one local day, and why.

Pure: no clock, no randomness, no I/O. `decide` gets the plan, the number's state, today's reading,
yesterday's outcome, the local date and the current instant, so any day replays exactly.

Plan volume
    A step ``volume: 8`` is constant; ``15..40`` runs linearly from 15 on the step's first day to 40 on
    its last; with ``curve: exponential`` it grows geometrically (the same factor every day; a range
    starting at 0 falls back to linear). Values round half up. Past the last plan day ``after: hold``
    keeps the final volume and ``after: stop`` ends the ramp (`plan_volume` returns None, the day STOPs).
    A plan day in a gap between steps keeps the volume the earlier step ended on.

Plan day
    `NumberState.plan_day` is the plan day of the last decision and `advance_pending` says that decision
    was a sending day that moves the ramp on if it went well. `decide` moves it on by one when
    yesterday went well; `state_after(state, decision)` is the state to store after each decision.
    A day **went well** when it sent something, at least half of what was planned (``MIN_SENT_SHARE``;
    the planned count already reflects the scheduler's cuts) and at most 20 % of its attempts failed
    (``MAX_FAILURE_SHARE``). A missing outcome did not go well. Only a day whose action is ADVANCE with a
    quota above zero sets `advance_pending`: rest, hold, throttle, step-back, binding caps (risk or
    resume climb), pause and stop never move the ramp on.

Candidates and the most-restrictive-wins order
    Every fact that shapes the day adds a reason with an action and, usually, a quota limit: the ramp
    (ADVANCE, the plan volume), the resume climb (CAP), a missing or stale reading (HOLD), a rest day
    (REST), a paused number (PAUSE), the end of the plan (STOP) and **every** matching risk rule. The
    day's quota is the minimum of all limits; its action is the most restrictive one among the reasons,
    in the order of `warmup.core.domain.RESTRICTIVENESS`:

        advance < cap < throttle < step_back < hold < rest < pause < stop

    Rule effects: ``cap N`` limits the quota to N (a cap at or above the plan volume does not bind: its
    reason counts as ADVANCE with ``binding=False``, so a young number under ``cap: 50`` still climbs);
    ``throttle f`` limits it to floor(f x plan volume); ``step_back n`` moves the plan day back n days
    (not below 1) and limits the quota to that day's volume; ``hold`` limits it to the last sending
    day's volume (the plan volume if the number never sent); ``pause`` sends nothing and pauses the
    number; ``max_new_contacts m`` lowers the day's new-contacts limit without touching the quota.
    Throttle and step-back are also never above the last sending day's volume, so a restricted day
    never sends more than the last one.

Missing or stale reading
    No reading, or one older than ``risk.stale_after`` at ``now``, holds: the number keeps its last volume
    and does not advance, because nothing says it is safe to grow. The rules still apply to a stale
    reading (its restrictions are the best evidence there is).

Resume
    After a pause ends (`NumberState.resumed_on`), the quota re-enters at ``resume.at`` x the volume
    before the pause and climbs linearly back to the plan volume over ``resume.over`` (whole days,
    counted on the calendar): with ``at: 0.5, over: 3d`` a number paused at 120 with a plan volume of 150
    sends 60, 90, 120 and then 150.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Final

from warmup.core.domain import RESTRICTIVENESS, Action, DayOutcome, Decision, NumberState, Reading, Reason
from warmup.core.plan.model import Plan, RampStep
from warmup.core.plan.values import WEEKDAYS
from warmup.core.risk import RuleMatch, is_stale, matching_rules, reading_age

MIN_SENT_SHARE: Final = 0.5
"""A day went well only if it sent at least this share of what was planned."""

MAX_FAILURE_SHARE: Final = 0.2
"""A day went well only if at most this share of its send attempts failed."""


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _step_volume(step: RampStep, plan_day: int) -> int:
    low, high = step.volume
    first, last = step.days
    if low == high or first == last:
        return low
    position = (min(max(plan_day, first), last) - first) / (last - first)
    if step.curve == "exponential" and low > 0 and high > 0:
        return _round_half_up(low * (high / low) ** position)
    return _round_half_up(low + (high - low) * position)


def plan_volume(plan: Plan, plan_day: int) -> int | None:
    """The volume the plan alone allows on ``plan_day`` (1-based); None past the end with ``after: stop``."""
    if plan_day < 1:
        raise ValueError(f"plan days start at 1, got {plan_day}")
    steps = sorted(plan.ramp.steps, key=lambda step: step.first_day)
    for step in steps:
        if step.first_day <= plan_day <= step.last_day:
            return _step_volume(step, plan_day)
    if plan_day > plan.last_plan_day:
        if plan.ramp.after == "stop":
            return None
        final = max(steps, key=lambda step: step.last_day)
        return _step_volume(final, final.last_day)
    earlier = [step for step in steps if step.last_day < plan_day]
    if earlier:  # a gap between two steps keeps the volume the earlier one ended on
        step = max(earlier, key=lambda step: step.last_day)
        return _step_volume(step, step.last_day)
    return _step_volume(steps[0], steps[0].first_day)  # before the first step: its starting volume


def went_well(outcome: DayOutcome | None) -> bool:
    """Whether a sending day counts for the ramp: see "Plan day" in the module docstring."""
    if outcome is None or outcome.sent <= 0:
        return False
    if outcome.planned > 0 and outcome.sent < MIN_SENT_SHARE * outcome.planned:
        return False
    return outcome.failed <= MAX_FAILURE_SHARE * (outcome.sent + outcome.failed)


def is_sending_weekday(plan: Plan, local_date: date) -> bool:
    """False on the plan's rest days and on weekdays that no send window covers."""
    weekday = local_date.weekday()
    if weekday in plan.schedule.rest_days:
        return False
    return any(weekday in window.days for window in plan.schedule.windows)


def state_after(state: NumberState, decision: Decision) -> NumberState:
    """The state to keep after ``decision``, for the next local day's `decide` (the store keeps exactly
    this: `warmup.store.days`).

    A PAUSE decision pauses the number (only a resume ends a pause), remembers the volume before it and
    leaves nothing pending (as an admin pause does: `paused_state`); `pause_reason` says why.
    """
    newly_paused = decision.action is Action.PAUSE and not state.paused
    return replace(
        state,
        plan_day=decision.plan_day,
        advance_pending=decision.next_plan_day > decision.plan_day and not newly_paused,
        last_volume=decision.quota if decision.quota > 0 else state.last_volume,
        paused=state.paused or decision.action is Action.PAUSE,
        paused_volume=state.last_volume if newly_paused else state.paused_volume,
    )


def pause_reason(decision: Decision) -> str:
    """Why a PAUSE decision paused the number: the texts of its pausing reasons."""
    return "; ".join(r.text for r in decision.reasons if r.action is Action.PAUSE) or "risk policy"


def paused_state(state: NumberState) -> NumberState:
    """The state after an admin pause: nothing is sent until `resumed_state`."""
    if state.paused:
        return state
    return replace(state, paused=True, paused_volume=state.last_volume, advance_pending=False)


def resumed_state(state: NumberState, local_date: date) -> NumberState:
    """The state after a pause ends on ``local_date``: the resume policy climbs back from there."""
    volume = state.paused_volume if state.paused_volume is not None else state.last_volume
    return replace(state, paused=False, resumed_on=local_date, paused_volume=volume, advance_pending=False)


@dataclass(frozen=True)
class _Effect:
    reason: Reason
    limit: int | None = None  # quota limit, None = no limit
    plan_day: int | None = None  # a step back moves the plan day here
    max_new_contacts: int | None = None


def _todays_plan_day(state: NumberState, yesterday: DayOutcome | None) -> tuple[int, str, Reason | None]:
    """Today's plan day, a note for the ramp reason, and a reason when yesterday kept the ramp in place."""
    if not state.advance_pending:
        return state.plan_day, "", None
    if went_well(yesterday):
        assert yesterday is not None
        today = state.plan_day + 1
        sent = f"sent {yesterday.sent} of {yesterday.planned}"
        note = f"yesterday went well ({sent}): plan day {today - 1} -> {today}"
        return today, note, None
    if yesterday is None:
        text = f"no outcome for yesterday: plan day stays {state.plan_day}"
    else:
        text = (
            f"yesterday did not go well (sent {yesterday.sent} of {yesterday.planned}, {yesterday.failed} "
            f"failed; needs {MIN_SENT_SHARE:.0%} sent and at most {MAX_FAILURE_SHARE:.0%} failed): "
            f"plan day stays {state.plan_day}"
        )
    return state.plan_day, "", Reason("yesterday", Action.ADVANCE, text)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f}h" if hours >= 1 or hours <= -1 else f"{delta.total_seconds() / 60:.0f}m"


def _hold_volume(state: NumberState, base: int) -> tuple[int, str]:
    if state.last_volume > 0:
        return state.last_volume, f"the last volume {state.last_volume}"
    return base, f"the plan volume {base} (nothing sent yet)"


def _no_rise(limit: int, state: NumberState) -> tuple[int, str]:
    if 0 < state.last_volume < limit:
        return state.last_volume, f" (not above the last volume {state.last_volume})"
    return limit, ""


def _rule_effect(match: RuleMatch, plan: Plan, state: NumberState, plan_day: int, base: int) -> _Effect:
    kind, value = match.rule.do.kind, match.rule.do.value
    head = f"{match.name} {match.matched} -> {kind}"
    if kind == "pause":
        return _Effect(Reason(match.name, Action.PAUSE, f"{head}: nothing is sent until resumed"), limit=0)
    if kind == "hold":
        volume, what = _hold_volume(state, base)
        text = f"{head}: hold at {what}, plan day stays {plan_day}: quota {base} -> {min(volume, base)}"
        return _Effect(Reason(match.name, Action.HOLD, text), limit=volume)
    if value is None:
        raise ValueError(f"{match.name}: '{kind}' needs a value")
    if kind == "cap":
        cap = int(value)
        if cap >= base:
            return _Effect(
                Reason(
                    match.name,
                    Action.ADVANCE,
                    f"{head} {cap}: not binding (plan volume {base})",
                    binding=False,
                )
            )
        return _Effect(Reason(match.name, Action.CAP, f"{head} {cap}: quota {base} -> {cap}"), limit=cap)
    if kind == "throttle":
        limit, note = _no_rise(math.floor(min(max(value, 0.0), 1.0) * base), state)
        text = f"{head} {value:g}: quota {base} -> {limit}{note}"
        return _Effect(Reason(match.name, Action.THROTTLE, text), limit=limit)
    if kind == "step_back":
        back_to = max(1, plan_day - int(value))
        back_volume = plan_volume(plan, back_to)
        limit, note = _no_rise(min(base, back_volume if back_volume is not None else 0), state)
        text = f"{head} {int(value)}: plan day {plan_day} -> {back_to}, quota {base} -> {limit}{note}"
        return _Effect(Reason(match.name, Action.STEP_BACK, text), limit=limit, plan_day=back_to)
    # max_new_contacts: lowers the day's new-contacts limit, the quota stays
    contacts = int(value)
    text = f"{head} {contacts}: new contacts {plan.pacing.max_new_contacts_per_day} -> {contacts}"
    return _Effect(Reason(match.name, Action.ADVANCE, text), max_new_contacts=contacts)


def _resume_effect(plan: Plan, state: NumberState, local_date: date, base: int) -> _Effect | None:
    if state.resumed_on is None:
        return None
    over_days = max(1, math.ceil(plan.risk.resume.over / timedelta(days=1)))
    day = (local_date - state.resumed_on).days
    if not 0 <= day < over_days:
        return None
    before = state.paused_volume if state.paused_volume is not None else state.last_volume
    start = plan.risk.resume.at * before
    head = (
        f"resumed on {state.resumed_on.isoformat()} (day {day + 1} of {over_days}): "
        f"re-entering at {plan.risk.resume.at:g} x {before}"
    )
    if start >= base:
        text = f"{head}: not binding (plan volume {base})"
        return _Effect(Reason("resume", Action.ADVANCE, text, binding=False))
    ceiling = math.floor(start + (base - start) * day / over_days)
    ceiling = max(ceiling, 1) if base >= 1 else 0
    text = f"{head}, climbing back to the plan: quota {base} -> {ceiling}"
    return _Effect(Reason("resume", Action.CAP, text), limit=ceiling)


def _reading_effects(
    plan: Plan, state: NumberState, reading: Reading | None, now: datetime, plan_day: int, base: int
) -> list[_Effect]:
    if reading is None:
        volume, what = _hold_volume(state, base)
        text = f"no risk reading: hold at {what}, plan day stays {plan_day}"
        return [_Effect(Reason("stale_reading", Action.HOLD, text), limit=volume)]
    effects: list[_Effect] = []
    if is_stale(reading, now, plan.risk.stale_after):
        volume, what = _hold_volume(state, base)
        age = _hours(reading_age(reading, now))
        text = (
            f"risk reading of {reading.taken_at.isoformat()} is {age} old "
            f"(stale after {_hours(plan.risk.stale_after)}): hold at {what}, plan day stays {plan_day}"
        )
        effects.append(_Effect(Reason("stale_reading", Action.HOLD, text), limit=volume))
    effects.extend(
        _rule_effect(match, plan, state, plan_day, base) for match in matching_rules(plan, reading)
    )
    return effects


def decide(
    plan: Plan,
    state: NumberState,
    reading: Reading | None,
    yesterday: DayOutcome | None,
    local_date: date,
    now: datetime,
) -> Decision:
    """Today's quota, plan day and action for one number, with one reason per fact that shaped it.

    ``reading`` is the latest risk reading (None if there is none), ``yesterday`` what the previous
    local day did, ``now`` the aware instant of the decision (only used to judge the reading's age).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got naive {now.isoformat()}")
    if state.plan_day < 1:
        raise ValueError(f"plan days start at 1, got {state.plan_day}")
    plan_day, note, stayed = _todays_plan_day(state, yesterday)
    volume = plan_volume(plan, plan_day)
    suffix = f" ({note})" if note else ""
    kept = [_Effect(stayed)] if stayed is not None else []
    if volume is None:
        last = plan.last_plan_day
        text = f"plan day {plan_day} is past the last plan day {last} and the plan says after: stop"
        reasons = (Reason("ramp", Action.STOP, text + suffix), *(effect.reason for effect in kept))
        return Decision(local_date, plan_day, plan_day, Action.STOP, 0, 0, 0, reasons)

    base = volume
    effects = [
        _Effect(Reason("ramp", Action.ADVANCE, f"plan day {plan_day}: plan volume {base}{suffix}")),
        *kept,
    ]
    if state.paused:
        effects.append(
            _Effect(Reason("paused", Action.PAUSE, "number is paused: nothing is sent until resumed"), 0)
        )
    else:
        if not is_sending_weekday(plan, local_date):
            weekday = WEEKDAYS[local_date.weekday()]
            why = (
                "a rest day of the plan"
                if local_date.weekday() in plan.schedule.rest_days
                else "without a window"
            )
            effects.append(
                _Effect(Reason("rest_day", Action.REST, f"{weekday} is {why}: nothing is sent"), 0)
            )
        resume = _resume_effect(plan, state, local_date, base)
        if resume is not None:
            effects.append(resume)
        effects.extend(_reading_effects(plan, state, reading, now, plan_day, base))

    quota = min([base, *(effect.limit for effect in effects if effect.limit is not None)])
    final_day = min([plan_day, *(effect.plan_day for effect in effects if effect.plan_day is not None)])
    action = max((effect.reason.action for effect in effects), key=RESTRICTIVENESS.__getitem__)
    new_contacts = min(
        [plan.pacing.max_new_contacts_per_day, quota]
        + [effect.max_new_contacts for effect in effects if effect.max_new_contacts is not None]
    )
    advances = action is Action.ADVANCE and quota > 0
    return Decision(
        local_date=local_date,
        plan_day=final_day,
        next_plan_day=final_day + 1 if advances else final_day,
        action=action,
        quota=quota,
        plan_volume=base,
        max_new_contacts=new_contacts,
        reasons=tuple(effect.reason for effect in effects),
    )


@dataclass(frozen=True)
class RuleEffect:
    """What one matching risk rule does to a day, as `decide` applies it."""

    reason: Reason
    limit: int | None  # quota limit, None = no limit
    plan_day: int | None  # a step back moves the plan day here
    matched: str  # what matched, e.g. "quality=yellow"


def rule_effects(
    plan: Plan, state: NumberState, reading: Reading, plan_day: int, base: int
) -> list[RuleEffect]:
    """The plan's risk rules on ``reading`` for a day at ``plan_day`` whose plan volume is ``base``, each
    as `decide` applies it (``state.last_volume``: the last sending day's volume, for hold and the
    no-rise limit). The scheduler re-judges a planned day with it when a reading comes after the day
    was decided (`warmup.core.rejudge`)."""
    effects = []
    for match in matching_rules(plan, reading):
        effect = _rule_effect(match, plan, state, plan_day, base)
        effects.append(RuleEffect(effect.reason, effect.limit, effect.plan_day, match.matched))
    return effects
