"""Tests for warmup.core.localtime: a number's local date, its day bounds and window spans across DST."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest

from tests.core.test_spread import daily, make_plan, utc
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of, local_day_bounds, window_spans
from warmup.core.spread import spread

# --- zones, day bounds, window spans ----------------------------------------------------------------


def test_unknown_timezone_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown timezone 'Mars/Olympus'"):
        window_spans(date(2026, 11, 23), make_plan(), "Mars/Olympus")
    with pytest.raises(UserError, match="unknown timezone"):
        local_day_bounds(date(2026, 11, 23), "")
    with pytest.raises(UserError, match="unknown timezone"):
        spread(date(2026, 11, 29), 5, make_plan(rest_days=["sun"]), "Nowhere/City", random.Random(1))


def test_local_date_of_uses_the_numbers_clock() -> None:
    instant = utc(2026, 11, 23, 20, 0)
    assert local_date_of(instant, "Asia/Kathmandu") == date(2026, 11, 24)  # 01:45 +05:45
    assert local_date_of(instant, "America/Sao_Paulo") == date(2026, 11, 23)
    assert local_date_of(utc(2026, 11, 24, 2, 59), "America/Sao_Paulo") == date(2026, 11, 23)
    assert local_date_of(utc(2026, 11, 24, 3, 0), "America/Sao_Paulo") == date(2026, 11, 24)
    with pytest.raises(ValueError, match="aware"):
        local_date_of(datetime(2026, 11, 23, 20, 0), "UTC")


@pytest.mark.parametrize(
    ("tz", "day", "start", "hours"),
    [
        ("Europe/Berlin", date(2026, 11, 23), utc(2026, 11, 22, 23), 24),
        ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 5), 23),
        ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 4), 25),
        ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 28, 23), 23),
        ("Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 24, 22), 25),
        ("Australia/Sydney", date(2026, 10, 4), utc(2026, 10, 3, 14), 23),
        ("Australia/Sydney", date(2026, 4, 5), utc(2026, 4, 4, 13), 25),
        ("Australia/Lord_Howe", date(2026, 10, 4), utc(2026, 10, 3, 13, 30), 23.5),
        ("Australia/Lord_Howe", date(2026, 4, 5), utc(2026, 4, 4, 13), 24.5),
        # Brazil 2018: DST began at midnight, so 2018-11-04 started at 01:00 -02.
        ("America/Sao_Paulo", date(2018, 11, 4), utc(2018, 11, 4, 3), 23),
        # Brazil 2019: DST ended at midnight, Saturday 23:00-24:00 happened twice.
        ("America/Sao_Paulo", date(2019, 2, 16), utc(2019, 2, 16, 2), 25),
        ("Asia/Kathmandu", date(2026, 11, 23), utc(2026, 11, 22, 18, 15), 24),
        ("Asia/Kolkata", date(2026, 11, 23), utc(2026, 11, 22, 18, 30), 24),
    ],
)
def test_local_day_bounds(tz: str, day: date, start: datetime, hours: float) -> None:
    first, end = local_day_bounds(day, tz)
    assert first == start
    assert end - first == timedelta(hours=hours)
    assert local_date_of(first, tz) == day
    assert local_date_of(first - timedelta(microseconds=1), tz) == day - timedelta(days=1)
    assert local_date_of(end - timedelta(microseconds=1), tz) == day
    assert local_date_of(end, tz) == day + timedelta(days=1)


@pytest.mark.parametrize(
    ("tz", "day", "hours", "expected"),
    [
        # Ordinary day, whole-hour and 45/30-minute offsets.
        (
            "America/Sao_Paulo",
            date(2026, 11, 23),
            "09:00-12:30",
            [(utc(2026, 11, 23, 12), utc(2026, 11, 23, 15, 30))],
        ),
        (
            "Asia/Kathmandu",
            date(2026, 11, 23),
            "09:00-12:30",
            [(utc(2026, 11, 23, 3, 15), utc(2026, 11, 23, 6, 45))],
        ),
        (
            "Asia/Kolkata",
            date(2026, 11, 23),
            "09:00-24:00",
            [(utc(2026, 11, 23, 3, 30), utc(2026, 11, 23, 18, 30))],
        ),
        # Spring forward: the window spanning the skipped hour is an hour shorter.
        ("America/New_York", date(2026, 3, 8), "01:00-04:00", [(utc(2026, 3, 8, 6), utc(2026, 3, 8, 8))]),
        ("Europe/Berlin", date(2026, 3, 29), "01:00-04:00", [(utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))]),
        (
            "Australia/Sydney",
            date(2026, 10, 4),
            "01:00-04:00",
            [(utc(2026, 10, 3, 15), utc(2026, 10, 3, 17))],
        ),
        (
            "Australia/Lord_Howe",
            date(2026, 10, 4),
            "01:00-04:00",
            [(utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 17))],
        ),
        # A window entirely inside the skipped hour does not occur; one starting inside opens at the jump.
        ("Europe/Berlin", date(2026, 3, 29), "02:00-03:00", []),
        ("Europe/Berlin", date(2026, 3, 29), "02:30-04:00", [(utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))]),
        ("America/Sao_Paulo", date(2018, 11, 4), "00:00-02:00", [(utc(2018, 11, 4, 3), utc(2018, 11, 4, 4))]),
        # Fall back: both passes of the repeated hour count, so the window is an hour longer.
        ("America/New_York", date(2026, 11, 1), "01:00-04:00", [(utc(2026, 11, 1, 5), utc(2026, 11, 1, 9))]),
        ("Europe/Berlin", date(2026, 10, 25), "02:00-03:00", [(utc(2026, 10, 25, 0), utc(2026, 10, 25, 2))]),
        ("Australia/Sydney", date(2026, 4, 5), "01:00-04:00", [(utc(2026, 4, 4, 14), utc(2026, 4, 4, 18))]),
        (
            "Australia/Lord_Howe",
            date(2026, 4, 5),
            "01:00-04:00",
            [(utc(2026, 4, 4, 14), utc(2026, 4, 4, 17, 30))],
        ),
        ("America/Sao_Paulo", date(2019, 2, 16), "22:00-24:00", [(utc(2019, 2, 17, 0), utc(2019, 2, 17, 3))]),
        # A window edge inside the repeated hour: first pass 01:30-02:00 EDT, then 01:30-03:00 EST.
        (
            "America/New_York",
            date(2026, 11, 1),
            "01:30-03:00",
            [(utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6)), (utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 8))],
        ),
    ],
)
def test_window_spans(tz: str, day: date, hours: str, expected: list[tuple[datetime, datetime]]) -> None:
    assert window_spans(day, daily(hours), tz) == expected


def test_window_spans_merge_touching_windows_and_respect_weekdays_and_rest_days() -> None:
    plan = make_plan(
        windows=[("mon-fri", "09:00-12:00"), ("mon", "12:00-13:00"), ("sat,sun", "10:00-11:00")],
        rest_days=["sun"],
    )
    tz = "UTC"
    assert window_spans(date(2026, 11, 23), plan, tz) == [
        (utc(2026, 11, 23, 9), utc(2026, 11, 23, 13))
    ]  # Mon
    assert window_spans(date(2026, 11, 24), plan, tz) == [
        (utc(2026, 11, 24, 9), utc(2026, 11, 24, 12))
    ]  # Tue
    assert window_spans(date(2026, 11, 28), plan, tz) == [
        (utc(2026, 11, 28, 10), utc(2026, 11, 28, 11))
    ]  # Sat
    assert window_spans(date(2026, 11, 29), plan, tz) == []  # Sun: rest day wins over its window
