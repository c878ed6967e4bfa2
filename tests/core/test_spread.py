"""Tests for warmup.core.spread: the spread's pacing rules, on ordinary and DST days (window spans and
day bounds themselves: tests/core/test_localtime.py)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warmup.core.localtime import local_day_bounds, window_spans
from warmup.core.plan.model import Plan
from warmup.core.spread import SpreadResult, spread

HOUR = timedelta(hours=1)


def make_plan(
    windows: list[tuple[str, str]] | None = None,
    gap: str = "40s..6m",
    max_per_hour: int = 30,
    rest_days: list[str] | None = None,
    typing: str = "2s..8s",
) -> Plan:
    windows = windows if windows is not None else [("mon-fri", "09:00-12:30"), ("mon-fri", "14:00-19:00")]
    data: dict[str, Any] = {
        "name": "test-plan",
        "schedule": {
            "windows": [{"days": days, "hours": hours} for days, hours in windows],
            "rest_days": rest_days or [],
        },
        "ramp": {"steps": [{"days": 1, "volume": 1}]},
        "pacing": {"gap": gap, "typing": typing, "max_per_hour": max_per_hour},
    }
    return Plan.model_validate(data)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def effective_gap_bounds(plan: Plan) -> tuple[timedelta, timedelta]:
    """The module's documented adjustment: low at least 1s, high at least low + 1s."""
    low = max(plan.pacing.gap.low, timedelta(seconds=1))
    return low, max(plan.pacing.gap.high, low + timedelta(seconds=1))


def daily(hours: str) -> Plan:
    return make_plan(windows=[("daily", hours)])


def check_spread(
    result: SpreadResult,
    local_date: date,
    quota: int,
    plan: Plan,
    tz_name: str,
    not_before: datetime | None = None,
    earlier: list[datetime] | None = None,
) -> None:
    """Every rule of `spread`, checked against the plan directly (local wall clock), not the module.

    With ``earlier`` sends, the new ones come after them and the rules hold across the seam.
    """
    times = result.times
    assert len(times) == quota - result.cut
    assert 0 <= result.cut <= quota
    assert (result.reason is None) == (result.cut == 0)
    if result.reason is not None:
        assert result.reason.strip()
    assert len(result.typing) == len(times)
    typing_low = plan.pacing.typing.low.total_seconds()
    typing_high = plan.pacing.typing.high.total_seconds()
    assert all(typing_low <= t <= typing_high for t in result.typing)

    tz = ZoneInfo(tz_name)
    weekday = local_date.weekday()
    assert weekday not in plan.schedule.rest_days or not times
    for moment in times:
        assert moment.utcoffset() == timedelta(0)
        local = moment.astimezone(tz)
        assert local.date() == local_date
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        assert any(
            weekday in w.days and w.start_minute <= minute < w.end_minute for w in plan.schedule.windows
        ), f"{local} is outside the windows"
        if not_before is not None:
            assert moment >= not_before

    assert all(a < b for a, b in pairwise(times)), "times must strictly increase"

    spans = window_spans(local_date, plan, tz_name)

    def span_of(moment: datetime) -> int:
        (index,) = [i for i, (s, e) in enumerate(spans) if s <= moment < e]
        return index

    low, high = effective_gap_bounds(plan)
    gaps = [b - a for a, b in pairwise(times)]
    for (a, b), gap in zip(pairwise(times), gaps, strict=True):
        assert gap >= low
        if span_of(a) == span_of(b):
            assert gap <= high, f"gap {gap} inside a window exceeds {high}"
    assert all(g1 != g2 for g1, g2 in pairwise(gaps)), "two equal consecutive gaps"

    cap = plan.pacing.max_per_hour
    for start in times:  # the busiest half-open hour starts at a send
        assert sum(1 for t in times if start <= t < start + HOUR) <= cap

    if earlier and times:
        before = sorted(earlier)
        assert times[0] - before[-1] >= low
        seam_gaps = [b - a for a, b in pairwise([*before[-2:], *times[:2]])]
        assert all(g1 != g2 for g1, g2 in pairwise(seam_gaps)), "equal gaps across the seam"
        everything = before + times
        for start in everything:
            window = [t for t in everything if start <= t < start + HOUR]
            assert len(window) <= cap or all(t in before for t in window)


# --- spread: examples -------------------------------------------------------------------------------

MONDAY = date(2026, 11, 23)


@pytest.mark.parametrize("quota", [0, 1, 2, 8, 40, 150, 220, 255])
def test_spread_fits_typical_quotas(quota: int) -> None:
    plan = make_plan()
    result = spread(MONDAY, quota, plan, "America/Sao_Paulo", random.Random(quota))
    check_spread(result, MONDAY, quota, plan, "America/Sao_Paulo")
    assert result.cut == 0


def test_spread_is_deterministic_for_a_seed() -> None:
    plan = make_plan()
    first = spread(MONDAY, 120, plan, "Europe/Berlin", random.Random(7))
    again = spread(MONDAY, 120, plan, "Europe/Berlin", random.Random(7))
    other = spread(MONDAY, 120, plan, "Europe/Berlin", random.Random(8))
    assert first == again
    assert first.times != other.times


def test_spread_does_not_cram_sends_at_the_window_start() -> None:
    plan = make_plan(windows=[("daily", "09:00-17:00")], gap="1m..2h")
    tz = "UTC"
    window_start, window_end = utc(2026, 11, 23, 9), utc(2026, 11, 23, 17)
    firsts = []
    for seed in range(20):
        result = spread(MONDAY, 8, plan, tz, random.Random(seed))
        check_spread(result, MONDAY, 8, plan, tz)
        # Eight sends with gaps up to 2h can cover the 8h window: they should cover most of it.
        assert result.times[-1] - result.times[0] > (window_end - window_start) / 2
        firsts.append(result.times[0])
    assert len(set(firsts)) == 20
    assert max(firsts) - min(firsts) > timedelta(minutes=20)


def test_busy_day_uses_the_whole_window() -> None:
    plan = make_plan(windows=[("daily", "09:00-12:00")], gap="40s..6m", max_per_hour=60)
    result = spread(MONDAY, 100, plan, "UTC", random.Random(1))
    check_spread(result, MONDAY, 100, plan, "UTC")
    assert result.times[-1] - result.times[0] > timedelta(hours=2, minutes=30)


def test_gaps_vary_like_a_person_on_a_moderate_day() -> None:
    plan = make_plan()
    result = spread(MONDAY, 150, plan, "UTC", random.Random(3))
    gaps = sorted((b - a).total_seconds() for a, b in pairwise(result.times))
    assert gaps[len(gaps) // 10] < 120 < gaps[-len(gaps) // 10]  # both short and long gaps occur


def test_cut_when_windows_are_too_short_for_the_gap() -> None:
    plan = make_plan(windows=[("daily", "09:00-10:00")], gap="5m..10m")
    result = spread(MONDAY, 20, plan, "UTC", random.Random(1))
    check_spread(result, MONDAY, 20, plan, "UTC")
    assert len(result.times) == 12  # 0, 5, ..., 55 minutes: eleven gaps of at least 5m
    assert result.cut == 8
    assert result.reason is not None
    assert "only 12 of 20 sends fit in the 1 h of send windows" in result.reason
    assert "minimum gap of 5 min" in result.reason  # written for people, not as plan syntax


def test_cut_by_the_hourly_cap() -> None:
    plan = make_plan(windows=[("daily", "09:00-17:00")], gap="10s..5m", max_per_hour=20)
    result = spread(MONDAY, 200, plan, "UTC", random.Random(1))
    check_spread(result, MONDAY, 200, plan, "UTC")
    assert 150 <= len(result.times) <= 161  # 20 an hour for 8 hours, plus the one at the edge
    assert result.reason is not None and "max_per_hour 20" in result.reason


def test_gap_high_times_cap_under_an_hour_limits_each_window() -> None:
    plan = make_plan(
        windows=[("daily", "09:00-12:00"), ("daily", "14:00-17:00")], gap="10s..1m", max_per_hour=20
    )
    result = spread(MONDAY, 100, plan, "UTC", random.Random(2))
    check_spread(result, MONDAY, 100, plan, "UTC")
    assert len(result.times) == 40
    assert result.reason is not None and "under an hour" in result.reason


@pytest.mark.parametrize("seed", range(5))
def test_close_windows_keep_the_hourly_cap_across_the_break(seed: int) -> None:
    # gap.high 1m x 20 an hour is under an hour: one session per window, an hour between sessions
    conflict = make_plan(
        windows=[("daily", "09:00-10:00"), ("daily", "10:05-12:00")], gap="10s..1m", max_per_hour=20
    )
    result = spread(MONDAY, 100, conflict, "UTC", random.Random(seed))
    check_spread(result, MONDAY, 100, conflict, "UTC")
    assert len(result.times) == 40
    # 30 an hour with gaps from 40s: a busy morning must not run into a busy late morning
    busy = make_plan(windows=[("daily", "09:00-10:00"), ("daily", "10:01-11:00")], max_per_hour=30)
    result = spread(MONDAY, 60, busy, "UTC", random.Random(seed))
    check_spread(result, MONDAY, 60, busy, "UTC")


def test_fixed_gap_is_widened_so_gaps_still_differ() -> None:
    plan = make_plan(windows=[("daily", "09:00-10:00")], gap="1m", max_per_hour=60)
    result = spread(MONDAY, 30, plan, "UTC", random.Random(4))
    check_spread(result, MONDAY, 30, plan, "UTC")
    assert result.cut == 0


def test_rest_day_and_missing_window_cut_everything() -> None:
    plan = make_plan(rest_days=["sun"])
    sunday = spread(date(2026, 11, 29), 10, plan, "UTC", random.Random(1))
    assert sunday == SpreadResult([], [], 10, "Sunday is a rest day in plan 'test-plan'")
    saturday = spread(date(2026, 11, 28), 10, plan, "UTC", random.Random(1))
    assert saturday.times == [] and saturday.cut == 10
    assert saturday.reason == "plan 'test-plan' has no send window on Saturday"


def test_window_inside_the_skipped_hour_cuts_with_a_dst_reason() -> None:
    result = spread(date(2026, 3, 29), 5, daily("02:00-03:00"), "Europe/Berlin", random.Random(1))
    assert result.cut == 5 and result.reason is not None and "DST" in result.reason


def test_not_before_respreads_the_rest_of_the_day() -> None:
    plan = make_plan(windows=[("daily", "09:00-12:00"), ("daily", "14:00-19:00")])
    tz = "America/Sao_Paulo"  # -03:00
    resume = utc(2026, 11, 23, 18, 0)  # 15:00 local
    result = spread(MONDAY, 60, plan, tz, random.Random(5), not_before=resume)
    check_spread(result, MONDAY, 60, plan, tz, not_before=resume)
    assert result.cut == 0
    # spread over the four hours left, not bursted right after the resume
    assert result.times[-1] - result.times[0] > timedelta(hours=3)
    first_hour = [t for t in result.times if t < resume + HOUR]
    assert len(first_hour) <= 30


@pytest.mark.parametrize("seed", range(4))
def test_resume_after_a_busy_morning_keeps_the_cap_across_the_seam(seed: int) -> None:
    plan = make_plan(windows=[("daily", "08:00-18:00")], gap="40s..6m", max_per_hour=30)
    morning = spread(MONDAY, 200, plan, "UTC", random.Random(seed))
    assert morning.cut == 0
    paused_at = utc(2026, 11, 23, 11)
    sent = [t for t in morning.times if t < paused_at]
    resume = paused_at + timedelta(minutes=5)
    rest = spread(
        MONDAY, 200 - len(sent), plan, "UTC", random.Random(seed + 100), not_before=resume, earlier=sent
    )
    check_spread(rest, MONDAY, 200 - len(sent), plan, "UTC", not_before=resume, earlier=sent)
    assert len(rest.times) > 100


def test_earlier_sends_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        spread(MONDAY, 1, make_plan(), "UTC", random.Random(1), earlier=[datetime(2026, 11, 23, 10)])


def test_not_before_after_the_last_window_cuts_all() -> None:
    plan = make_plan(windows=[("daily", "09:00-12:00")])
    result = spread(MONDAY, 10, plan, "UTC", random.Random(1), not_before=utc(2026, 11, 23, 12, 0))
    assert result.times == [] and result.cut == 10
    assert result.reason == "no send-window time is left after 12:00 local time"


def test_not_before_late_cuts_what_no_longer_fits() -> None:
    plan = make_plan(windows=[("daily", "09:00-12:00")], gap="40s..6m", max_per_hour=30)
    late = utc(2026, 11, 23, 11, 30)
    result = spread(MONDAY, 40, plan, "UTC", random.Random(1), not_before=late)
    check_spread(result, MONDAY, 40, plan, "UTC", not_before=late)
    assert 0 < result.cut < 40
    assert result.reason is not None and "after 11:30 local time" in result.reason


def test_bad_arguments() -> None:
    plan = make_plan()
    with pytest.raises(ValueError, match="negative"):
        spread(MONDAY, -1, plan, "UTC", random.Random(1))
    with pytest.raises(ValueError, match="aware"):
        spread(MONDAY, 1, plan, "UTC", random.Random(1), not_before=datetime(2026, 11, 23, 10))


# --- spread across DST changes ----------------------------------------------------------------------

DST_DAYS = [
    ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
    ("Australia/Sydney", date(2026, 10, 4), date(2026, 4, 5)),
    ("Australia/Lord_Howe", date(2026, 10, 4), date(2026, 4, 5)),
]


@pytest.mark.parametrize(("tz", "spring", "fall"), DST_DAYS)
def test_spread_over_the_transition_hour(tz: str, spring: date, fall: date) -> None:
    plan = make_plan(windows=[("daily", "01:00-04:00")], gap="30s..3m", max_per_hour=60)
    counts = {}
    for day in (spring, fall, spring + timedelta(days=7)):
        result = spread(day, 1000, plan, tz, random.Random(11))
        check_spread(result, day, 1000, plan, tz)
        assert result.cut > 0
        counts[day] = len(result.times)
        # all sends of the repeated hour are in real order, no instant twice
        assert len(set(result.times)) == len(result.times)
    assert counts[spring] < counts[spring + timedelta(days=7)] < counts[fall]


def test_spread_on_the_sao_paulo_midnight_changes() -> None:
    plan = make_plan(windows=[("daily", "00:00-02:00"), ("daily", "22:00-24:00")], max_per_hour=40)
    for day in (date(2018, 11, 4), date(2019, 2, 16)):
        result = spread(day, 60, plan, "America/Sao_Paulo", random.Random(3))
        check_spread(result, day, 60, plan, "America/Sao_Paulo")
        assert result.cut == 0


@pytest.mark.parametrize("tz", ["Asia/Kathmandu", "Asia/Kolkata"])
def test_spread_in_zones_with_odd_offsets(tz: str) -> None:
    plan = make_plan()
    result = spread(MONDAY, 100, plan, tz, random.Random(9))
    check_spread(result, MONDAY, 100, plan, tz)
    assert result.cut == 0
    first_local = result.times[0].astimezone(ZoneInfo(tz))
    assert (9, 0) <= (first_local.hour, first_local.minute) < (12, 30)


# --- spread: properties -----------------------------------------------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
]
INTERESTING_DAYS = [
    date(2026, 3, 8),
    date(2026, 3, 29),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2026, 10, 25),
    date(2026, 11, 1),
    date(2018, 11, 4),
    date(2019, 2, 16),
]


@st.composite
def windows_strategy(draw: st.DrawFn) -> list[tuple[str, str]]:
    """One to three windows that never overlap (the plan model refuses overlaps), any weekdays."""
    count = draw(st.integers(1, 3))
    edges = sorted(draw(st.sets(st.integers(0, 1440), min_size=2 * count, max_size=2 * count)))
    result = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        days = draw(st.sampled_from(["daily", "mon-fri", "sat,sun", "tue"]))
        result.append((days, f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"))
    return result


@st.composite
def plan_strategy(draw: st.DrawFn) -> Plan:
    low = draw(st.integers(2, 600))  # the plan model wants gap.low >= 1s and >= typing.high
    high = low + draw(st.integers(0, 900))
    return make_plan(
        windows=draw(windows_strategy()),
        gap=f"{low}s..{high}s",
        max_per_hour=draw(st.integers(1, 120)),
        rest_days=draw(st.sampled_from([[], ["sun"], ["wed"]])),
        typing="1s..2s",
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=plan_strategy(),
    quota=st.integers(0, 300),
    tz=st.sampled_from(ZONES),
    day=st.one_of(st.sampled_from(INTERESTING_DAYS), st.dates(date(2024, 1, 1), date(2027, 12, 31))),
    seed=st.integers(0, 2**32 - 1),
    resume_minutes=st.none() | st.integers(-120, 1600),
    sent_before=st.none() | st.integers(0, 300),
)
def test_spread_properties(
    plan: Plan,
    quota: int,
    tz: str,
    day: date,
    seed: int,
    resume_minutes: int | None,
    sent_before: int | None,
) -> None:
    not_before = None
    if resume_minutes is not None:
        not_before = local_day_bounds(day, tz)[0] + timedelta(minutes=resume_minutes, microseconds=seed % 997)
    earlier: list[datetime] = []
    if sent_before is not None and not_before is not None:  # a day paused at not_before, then resumed
        earlier = [
            t for t in spread(day, sent_before, plan, tz, random.Random(~seed)).times if t < not_before
        ]
    result = spread(day, quota, plan, tz, random.Random(seed), not_before=not_before, earlier=earlier)
    check_spread(result, day, quota, plan, tz, not_before=not_before, earlier=earlier)
    assert result == spread(day, quota, plan, tz, random.Random(seed), not_before=not_before, earlier=earlier)


@settings(max_examples=60, deadline=None)
@given(quota=st.integers(1, 60), seed=st.integers(0, 10_000))
def test_small_quotas_always_fit_a_roomy_plan(quota: int, seed: int) -> None:
    plan = make_plan()
    result = spread(MONDAY, quota, plan, "America/Sao_Paulo", random.Random(seed))
    assert result.cut == 0
    check_spread(result, MONDAY, quota, plan, "America/Sao_Paulo")
