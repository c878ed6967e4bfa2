"""Tests for warmup.clock: the one WARMUP_CLOCK setting every process of a run agrees on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from warmup.clock import (
    ENV_VAR,
    Clock,
    ManualClock,
    ScaledClock,
    SystemClock,
    clock_from_env,
    clock_from_settings,
    sleep_until,
)
from warmup.core.errors import UserError

SIM_START = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
SETTING = "2026-11-23T05:00:00Z@1767945600.25x1440"


def test_every_clock_satisfies_the_protocol() -> None:
    for candidate in (SystemClock(), ScaledClock.parse(SETTING), ManualClock(SIM_START)):
        assert isinstance(candidate, Clock)


def test_setting_round_trips() -> None:
    clock = ScaledClock.parse(SETTING)
    assert clock.sim_start == SIM_START
    assert clock.wall_start == 1767945600.25
    assert clock.scale == 1440
    assert clock.to_setting() == SETTING
    assert ScaledClock.parse(clock.to_setting()).to_setting() == SETTING
    assert repr(clock) == f"ScaledClock({SETTING!r})"


def test_fractional_scale_and_offset_round_trip() -> None:
    clock = ScaledClock.parse("2026-11-23T07:00:00+02:00@100x0.1")
    assert clock.sim_start == SIM_START  # normalised to UTC
    assert clock.scale == 0.1
    again = ScaledClock.parse(clock.to_setting())
    assert again.at_wall(123_456_789_000) == clock.at_wall(123_456_789_000)


def test_simulated_time_follows_the_formula() -> None:
    clock = ScaledClock.parse(SETTING)
    wall_start_ns = 1_767_945_600_250_000_000
    assert clock.at_wall(wall_start_ns) == SIM_START
    assert clock.at_wall(wall_start_ns + 60 * 10**9) == SIM_START + timedelta(days=1)  # 1 wall min = 1 day
    assert clock.at_wall(wall_start_ns + 2_500_000_000) == SIM_START + timedelta(hours=1)


def test_two_clocks_parsed_from_one_setting_agree() -> None:
    launcher = ScaledClock.starting_now(SIM_START, 1440)
    setting = launcher.to_setting()
    first, second = ScaledClock.parse(setting), ScaledClock.parse(setting)
    wall = time.time_ns()
    assert first.at_wall(wall) == second.at_wall(wall) == launcher.at_wall(wall)
    # read "now" from both: they differ only by the wall time between the two reads
    before = time.time_ns()
    a, b = first.now(), second.now()
    after = time.time_ns()
    assert timedelta(0) <= b - a <= timedelta(seconds=(after - before) / 1e9 * 1440)


def test_a_separate_process_agrees_on_simulated_time() -> None:
    setting = ScaledClock.starting_now(SIM_START, 1440).to_setting()
    here = ScaledClock.parse(setting)
    code = (
        "import time; from warmup.clock import clock_from_env; c = clock_from_env(); "
        "w = time.time_ns(); print(w, c.at_wall(w).isoformat())"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, ENV_VAR: setting},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    wall, there = int(output[0]), datetime.fromisoformat(output[1])
    assert there == here.at_wall(wall)


def test_starting_now_begins_at_sim_start() -> None:
    clock = ScaledClock.starting_now(SIM_START, 60)
    assert SIM_START <= clock.now() < SIM_START + timedelta(seconds=60 * 5)


def test_now_is_aware_utc_and_never_goes_backwards(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ScaledClock.starting_now(SIM_START, 1440)
    readings = [clock.now() for _ in range(500)]
    assert all(r.utcoffset() == timedelta(0) for r in readings)
    assert readings == sorted(readings)
    latest = clock.now()
    real_ns = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: real_ns - 3_600 * 10**9)  # wall stepped back
    assert clock.now() >= latest


def test_scaled_sleep_waits_the_scaled_wall_time() -> None:
    clock = ScaledClock.starting_now(SIM_START, 1000)
    start_sim = clock.now()
    start = time.perf_counter()
    clock.sleep(50)  # 50 simulated seconds = 0.05 wall seconds
    elapsed = time.perf_counter() - start
    assert 0.045 <= elapsed < 0.5
    assert clock.now() - start_sim >= timedelta(seconds=45)
    start = time.perf_counter()
    clock.sleep(0)
    clock.sleep(-10_000)  # would be 10 wall seconds if a negative duration were taken as positive
    assert time.perf_counter() - start < 1.0


def test_sleep_until() -> None:
    manual = ManualClock(SIM_START)
    sleep_until(manual, SIM_START + timedelta(minutes=5))
    assert manual.now() == SIM_START + timedelta(minutes=5)
    sleep_until(manual, SIM_START)  # in the past: no wait, no change
    assert manual.now() == SIM_START + timedelta(minutes=5)
    scaled = ScaledClock.starting_now(SIM_START, 3600)
    target = scaled.now() + timedelta(seconds=90)  # 25 ms of wall time
    sleep_until(scaled, target)
    assert scaled.now() >= target


def test_system_clock() -> None:
    system = SystemClock()
    before = datetime.now(UTC)
    assert before <= system.now() <= datetime.now(UTC)
    assert system.now().tzinfo is UTC
    assert system.scale == 1.0
    start = time.perf_counter()
    system.sleep(0.01)
    assert time.perf_counter() - start >= 0.009


def test_manual_clock() -> None:
    manual = ManualClock(SIM_START)
    assert manual.now() == manual.now() == SIM_START
    assert manual.advance(30) == SIM_START + timedelta(seconds=30)
    assert manual.advance(timedelta(minutes=1)) == SIM_START + timedelta(seconds=90)
    manual.sleep(10)
    assert manual.now() == SIM_START + timedelta(seconds=100)
    manual.set(SIM_START + timedelta(days=1))
    assert manual.now() == SIM_START + timedelta(days=1)
    with pytest.raises(ValueError, match="backwards"):
        manual.set(SIM_START)
    with pytest.raises(ValueError, match="backwards"):
        manual.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 11, 23))


def test_clock_from_env() -> None:
    assert isinstance(clock_from_env({}), SystemClock)
    assert isinstance(clock_from_env({ENV_VAR: "  "}), SystemClock)
    scaled = clock_from_env({ENV_VAR: SETTING})
    assert isinstance(scaled, ScaledClock)
    assert scaled.to_setting() == SETTING


def test_clock_from_settings_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert isinstance(clock_from_settings(), SystemClock)
    monkeypatch.setenv(ENV_VAR, SETTING)
    assert isinstance(clock_from_settings(), ScaledClock)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("garbage", "expected SIM_START@WALL_START x SCALE"),
        ("2026-11-23T05:00:00Z@1767945600", "expected SIM_START@WALL_START x SCALE"),
        ("2026-11-23T05:00:00Z x1440", "expected SIM_START@WALL_START x SCALE"),
        ("2026-11-23T05:00:00@1767945600x1440", "needs a UTC offset"),
        ("2026-13-23T05:00:00Z@1767945600x1440", "not an ISO 8601 date-time"),
        ("2026-11-23T05:00:00Z@soonx1440", "not unix seconds"),
        ("2026-11-23T05:00:00Z@-5x1440", "not unix seconds"),
        ("2026-11-23T05:00:00Z@NaNx1440", "not unix seconds"),
        ("2026-11-23T05:00:00Z@1767945600xfast", "not a number"),
        ("2026-11-23T05:00:00Z@1767945600x0", "above 0"),
        ("2026-11-23T05:00:00Z@1767945600x-2", "above 0"),
        ("2026-11-23T05:00:00Z@1767945600xinf", "above 0"),
        ("2026-11-23T05:00:00Z@1767945600xnan", "above 0"),
        ("2026-11-23T05:00:00Z@1767945600x1e9", "at most"),
    ],
)
def test_bad_settings_are_user_errors(setting: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        clock_from_env({ENV_VAR: setting})
    assert str(caught.value).startswith(f"{ENV_VAR}={setting!r} is not a valid clock setting")


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="aware"):
        ScaledClock(datetime(2026, 11, 23), 0.0, 1.0)
    with pytest.raises(ValueError, match="scale"):
        ScaledClock(SIM_START, 0.0, 0.0)
    with pytest.raises(ValueError, match="wall_start"):
        ScaledClock(SIM_START, float("nan"), 1.0)
