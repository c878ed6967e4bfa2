"""Whapi's `lastUpdateDate` (M/D/YYYY, no zone) read so that a reading computed on a number's local day
counts as that day's in every zone from UTC-12 to UTC+14, and an old one ages.

The rule (`meter_taken_at`): the date was written by a clock in some zone between UTC-12 and UTC+14, so
the computation happened before (date+1) 00:00 at UTC-12; taken_at = min(now, that bound).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.localtime import local_date_of
from warmup.core.risk import is_stale
from warmup.providers.whapi import meter_date_bounds, meter_taken_at, parse_meter

ZONES = ("Pacific/Kiritimati", "Etc/GMT+12", "America/Sao_Paulo", "Asia/Tokyo", "UTC")
WRITER_OFFSETS = st.integers(min_value=-12 * 4, max_value=14 * 4).map(lambda q: timedelta(minutes=15 * q))
STALE_AFTER = timedelta(hours=36)


def answer(day: date) -> dict[str, Any]:
    return {
        "lastUpdateDate": f"{day.month}/{day.day}/{day.year}",
        "lifeTime": 3,
        "riskFactor": 3,
        "riskFactorChats": 3,
        "riskFactorContacts": 3,
    }


def written(at: datetime, offset: timedelta) -> date:
    """The date a clock at UTC`offset` shows at the instant `at`."""
    return (at.astimezone(UTC) + offset).date()


def local_day_end(at: datetime, zone: str) -> datetime:
    """The first instant after `at`'s local day in `zone` (found by stepping, DST-proof)."""
    day = local_date_of(at, zone)
    step = at
    while local_date_of(step, zone) == day:
        step += timedelta(minutes=15)
    low, high = step - timedelta(minutes=15), step
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if local_date_of(middle, zone) == day:
            low = middle
        else:
            high = middle
    return high


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    offset=WRITER_OFFSETS,
    computed=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    later=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_reading_computed_on_the_local_day_counts_as_that_days(
    zone: str, offset: timedelta, computed: datetime, later: float
) -> None:
    """Whatever zone wrote the date, and whenever on the number's local day the reading is read
    (the POST itself, or a GET later that day), it is dated within [computed, now]: that local day."""
    end = local_day_end(computed, zone)
    now = computed + (end - computed - timedelta(seconds=1)) * later
    assert local_date_of(now, zone) == local_date_of(computed, zone)
    taken = meter_taken_at(written(computed, offset), now)
    assert taken is not None
    assert computed <= taken <= now
    assert local_date_of(taken, zone) == local_date_of(computed, zone)


@settings(max_examples=200, deadline=None)
@given(
    offset=WRITER_OFFSETS,
    computed=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    hours_later=st.integers(min_value=0, max_value=24 * 30),
)
def test_an_old_reading_ages_and_goes_stale(offset: timedelta, computed: datetime, hours_later: int) -> None:
    """Read again and again by GET, a computation keeps one date: its taken_at stops at the bound, is
    never after the true time by more than 50 hours, and stale_after fires at most that much late."""
    day = written(computed, offset)
    earliest, latest = meter_date_bounds(day)
    assert earliest <= computed < latest and latest - earliest == timedelta(hours=50)
    now = computed + timedelta(hours=hours_later)
    taken = meter_taken_at(day, now)
    assert taken is not None and computed <= taken <= min(now, latest)
    reading = parse_meter(answer(day), now, "whapi")
    assert not isinstance(reading, str) and reading.taken_at == taken
    if now - computed > STALE_AFTER + timedelta(hours=50):
        assert is_stale(reading, now, STALE_AFTER)
    if now >= latest:
        assert taken == latest  # no longer moves with `now`: it ages


@given(day=st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)))
def test_a_date_no_zone_shows_yet_is_in_the_future(day: date) -> None:
    earliest, _ = meter_date_bounds(day)
    assert meter_taken_at(day, earliest - timedelta(hours=1, seconds=1)) is None
    assert meter_taken_at(day, earliest) == earliest  # UTC+14 has just reached it
    assert "in the future" in str(parse_meter(answer(day), earliest - timedelta(hours=2), "whapi"))


# --- the cases by hand: Whapi writing its date in UTC --------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "local_post", "today"),
    [
        # Sao Paulo 08:00 is 11:00 UTC, same date: the old rule (00:00 UTC) made it yesterday 21:00
        ("America/Sao_Paulo", datetime(2026, 11, 23, 8, 0), date(2026, 11, 23)),
        # Sao Paulo 22:30 is already 11/24 in UTC: the meter's date is "tomorrow", still today's
        ("America/Sao_Paulo", datetime(2026, 11, 23, 22, 30), date(2026, 11, 23)),
        # Tokyo 08:00 is 23:00 UTC the day before: the meter's date is "yesterday", still today's
        ("Asia/Tokyo", datetime(2026, 11, 23, 8, 0), date(2026, 11, 23)),
        # Kiritimati (+14) 01:00 is 11:00 UTC the day before
        ("Pacific/Kiritimati", datetime(2026, 11, 23, 1, 0), date(2026, 11, 23)),
        # UTC-12 at 23:30 is 11:30 UTC the next day
        ("Etc/GMT+12", datetime(2026, 11, 23, 23, 30), date(2026, 11, 23)),
        ("UTC", datetime(2026, 11, 23, 0, 0), date(2026, 11, 23)),
    ],
)
def test_todays_post_is_todays_reading_whatever_the_zone(
    zone: str, local_post: datetime, today: date
) -> None:
    now = local_post.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    reading = parse_meter(answer(now.date()), now, "whapi")  # Whapi dates it in UTC
    assert not isinstance(reading, str)
    assert reading.taken_at == now
    assert local_date_of(reading.taken_at, zone) == today


def test_the_date_changes_between_the_post_and_local_midnight() -> None:
    """Sao Paulo: POST at 20:00 (23:00 UTC, dated 11/23); at 22:00 local a GET returns the same
    computation, now 01:00 UTC 11/24: still 11/23's reading, dated no later than the GET."""
    zone = "America/Sao_Paulo"
    post = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    get = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    first = parse_meter(answer(post.date()), post, "whapi")
    again = parse_meter(answer(post.date()), get, "whapi")
    assert not isinstance(first, str) and not isinstance(again, str)
    assert local_date_of(first.taken_at, zone) == local_date_of(again.taken_at, zone) == date(2026, 11, 23)
    # served again by GET days later (a POST that keeps failing), the same answer ages from its bound
    for later in (datetime(2026, 11, 25, 12, 0, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)):
        aged = parse_meter(answer(post.date()), later, "whapi")
        assert not isinstance(aged, str) and aged.taken_at == datetime(2026, 11, 24, 12, tzinfo=UTC)
        assert local_date_of(aged.taken_at, zone) != local_date_of(later, zone)
    assert not is_stale(aged, datetime(2026, 11, 26, 0, 0, tzinfo=UTC), STALE_AFTER)
    assert is_stale(aged, datetime(2026, 11, 26, 0, 1, tzinfo=UTC), STALE_AFTER)
