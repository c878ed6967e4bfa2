"""warmup.store.readings: the latest reading wins; bad factors are refused, one or a batch.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from tests.store.helpers import BATCH_NOW, DAY, NOW, TODAY, add, reading_of, zoned_numbers
from warmup.core.domain import Reading
from warmup.store import readings
from warmup.store.tables import InvalidWrite


def test_readings_latest_wins_and_bad_factors_are_refused(engine: Engine) -> None:
    number_id = add(engine)
    assert readings.latest_reading(engine, number_id) is None
    old = Reading(3, 3, 2, 3, NOW - timedelta(days=1), "whapi")
    new = Reading(2, 1, 2, 3, NOW, "local")
    readings.save_reading(engine, number_id, DAY, new)
    readings.save_reading(engine, number_id, DAY - timedelta(days=1), old)
    assert readings.latest_reading(engine, number_id) == new
    with pytest.raises(InvalidWrite, match="contacts"):
        readings.save_reading(engine, number_id, DAY, Reading(1, 1, 1, 4, NOW))


def test_save_readings_checks_every_reading_first(engine: Engine) -> None:
    ids = zoned_numbers(engine)
    good = (ids[0], TODAY, reading_of(3, BATCH_NOW))
    bad = (ids[1], TODAY, Reading(overall=4, lifetime=2, response_rate=3, contacts=1, taken_at=BATCH_NOW))
    with pytest.raises(ValueError, match="overall must be 1, 2 or 3"):
        readings.save_readings(engine, [good, bad])
    assert readings.latest_reading(engine, ids[0]) is None
    readings.save_readings(engine, [good])
    assert readings.latest_reading(engine, ids[0]) == good[2]
