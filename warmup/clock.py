"""The clock every process of a run reads, real or accelerated.

A simulated run compresses days into minutes. Scheduler, workers and simulator are separate processes
started at different moments, so they must agree on simulated time without talking to each other. They
do it through ONE setting, the environment variable ``WARMUP_CLOCK``::

    <sim_start ISO 8601, with offset>@<wall_start unix seconds>x<scale>
    2026-11-23T05:00:00Z@1767945600.25x1440

meaning "at wall-clock time ``wall_start`` the simulated time was ``sim_start``, and it runs ``scale``
times faster" (1440: one simulated day per wall minute). Every process computes::

    simulated_now = sim_start + (wall_now - wall_start) * scale

The launcher creates the setting once (``ScaledClock.starting_now(sim_start, scale).to_setting()``)
and hands the same string to every child. Unset means the real clock (`SystemClock`).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Protocol, runtime_checkable

from warmup.core.errors import UserError

ENV_VAR = "WARMUP_CLOCK"
MAX_SCALE = 1_000_000.0
"""At this scale a simulated day lasts under a tenth of a wall second; more is surely a typo."""

_EXAMPLE = "2026-11-23T05:00:00Z@1767945600x1440"
_SETTING = re.compile(r"^(?P<sim>[^@]+)@(?P<wall>[^x]+)x(?P<scale>.+)$")


@runtime_checkable
class Clock(Protocol):
    """What the workers, the scheduler and the simulator need from time."""

    scale: float
    """Simulated seconds per wall second (1.0 for the real clock)."""

    def now(self) -> datetime:
        """The current (simulated) time, aware, in UTC."""
        ...

    def sleep(self, sim_seconds: float) -> None:
        """Wait ``sim_seconds`` of simulated time (``sim_seconds / scale`` of wall time)."""
        ...


def sleep_until(clock: Clock, moment: datetime) -> None:
    """Wait until ``clock`` shows ``moment`` (returns at once when it already has)."""
    remaining = (moment - clock.now()).total_seconds()
    if remaining > 0:
        clock.sleep(remaining)


class SystemClock:
    """The real clock."""

    scale: float = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, sim_seconds: float) -> None:
        if sim_seconds > 0:
            time.sleep(sim_seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class ScaledClock:
    """Simulated time that started at ``sim_start`` at wall time ``wall_start`` and runs ``scale`` x.

    Two instances built from the same setting agree on the time in every process. One instance never
    goes backwards, even if the wall clock is stepped back.
    """

    def __init__(self, sim_start: datetime, wall_start: float, scale: float) -> None:
        if sim_start.tzinfo is None:
            raise ValueError("sim_start must be an aware datetime")
        if not math.isfinite(wall_start) or wall_start < 0:
            raise ValueError(f"wall_start must be finite unix seconds, got {wall_start!r}")
        if not math.isfinite(scale) or not 0 < scale <= MAX_SCALE:
            raise ValueError(f"scale must be > 0 and <= {MAX_SCALE:g}, got {scale!r}")
        self.sim_start = sim_start.astimezone(UTC)
        self.wall_start = wall_start
        self.scale = scale
        self._wall_start_ns = round(Decimal(repr(wall_start)) * 1_000_000_000)
        self._last = self.sim_start - timedelta(days=36500)
        self._lock = threading.Lock()

    @classmethod
    def starting_now(cls, sim_start: datetime, scale: float) -> ScaledClock:
        """A clock whose simulated time is ``sim_start`` right now; share its `to_setting()`."""
        return cls(sim_start, time.time_ns() / 1e9, scale)

    @classmethod
    def parse(cls, text: str) -> ScaledClock:
        """Read a ``WARMUP_CLOCK`` setting; a bad one raises `UserError` saying what is wrong."""
        cleaned = text.strip()
        match = _SETTING.match(cleaned)
        if not match:
            raise _bad(text, f"expected SIM_START@WALL_START x SCALE without spaces, e.g. {_EXAMPLE}")
        sim_text, wall_text, scale_text = match.group("sim", "wall", "scale")
        try:
            sim_start = datetime.fromisoformat(sim_text)
        except ValueError:
            raise _bad(text, f"{sim_text!r} is not an ISO 8601 date-time like 2026-11-23T05:00:00Z") from None
        if sim_start.tzinfo is None:
            raise _bad(text, f"the simulated start {sim_text!r} needs a UTC offset, e.g. a trailing Z")
        try:
            wall_start = Decimal(wall_text)
        except InvalidOperation:
            raise _bad(text, f"the wall start {wall_text!r} is not unix seconds like 1767945600") from None
        if not wall_start.is_finite() or wall_start < 0:
            raise _bad(text, f"the wall start {wall_text!r} is not unix seconds like 1767945600")
        try:
            scale = float(scale_text)
        except ValueError:
            raise _bad(text, f"the scale {scale_text!r} is not a number like 1440") from None
        if not math.isfinite(scale) or not 0 < scale <= MAX_SCALE:
            raise _bad(text, f"the scale must be above 0 and at most {MAX_SCALE:g}, got {scale_text!r}")
        clock = cls(sim_start, float(wall_start), scale)
        clock._wall_start_ns = round(wall_start * 1_000_000_000)  # exact, as written
        return clock

    def to_setting(self) -> str:
        """The ``WARMUP_CLOCK`` value that makes another process agree with this clock."""
        sim = self.sim_start.isoformat().replace("+00:00", "Z")
        wall = Decimal(self._wall_start_ns) / 1_000_000_000
        short = f"{self.scale:g}"
        scale = short if float(short) == self.scale else repr(self.scale)
        return f"{sim}@{wall:f}x{scale}"

    def at_wall(self, wall_ns: int) -> datetime:
        """Simulated time at wall time ``wall_ns`` (nanoseconds since the epoch); pure, for tests."""
        elapsed = (wall_ns - self._wall_start_ns) / 1e9 * self.scale
        return self.sim_start + timedelta(seconds=elapsed)

    def now(self) -> datetime:
        current = self.at_wall(time.time_ns())
        with self._lock:
            if current < self._last:
                current = self._last
            self._last = current
        return current

    def sleep(self, sim_seconds: float) -> None:
        if sim_seconds > 0:
            time.sleep(sim_seconds / self.scale)

    def __repr__(self) -> str:
        return f"ScaledClock({self.to_setting()!r})"


class ManualClock:
    """A clock for tests: time stands still until `advance` or `sleep` moves it (no real waiting)."""

    scale: float = 1.0

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, sim_seconds: float) -> None:
        if sim_seconds > 0:
            self.advance(sim_seconds)

    def advance(self, delta: float | timedelta) -> datetime:
        """Move time forward by ``delta`` (seconds or a timedelta) and return the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (not earlier than now)."""
        if moment.tzinfo is None:
            raise ValueError("moment must be an aware datetime")
        with self._lock:
            if moment < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = moment.astimezone(UTC)

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


def _bad(text: str, why: str) -> UserError:
    return UserError(f"{ENV_VAR}={text!r} is not a valid clock setting: {why}")


def clock_from_env(env: Mapping[str, str] | None = None) -> Clock:
    """The run's clock: `ScaledClock` from ``WARMUP_CLOCK``, or `SystemClock` when it is unset or empty."""
    source = os.environ if env is None else env
    text = source.get(ENV_VAR, "").strip()
    if not text:
        return SystemClock()
    return ScaledClock.parse(text)


def clock_from_settings() -> Clock:
    """The clock of this process, from its environment (the name the contracts use)."""
    return clock_from_env()
