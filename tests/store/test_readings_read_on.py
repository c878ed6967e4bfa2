"""Which numbers' provider meters were already read on a local day (`readings.read_on`): what lets a
fleet POST a Whapi meter once per number and local day. Both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, add
from warmup.core.domain import Reading
from warmup.store import readings


def test_read_on_is_per_number_local_day_and_source(engine: Engine) -> None:
    a, b, c = (add(engine, phone=f"+551199999000{i}") for i in (1, 2, 3))
    readings.save_reading(engine, a, DAY, Reading(3, 3, 3, 3, NOW, "whapi"))
    readings.save_reading(engine, b, DAY, Reading(3, 3, 3, 3, NOW, "local", meter_error="risk meter POST: x"))
    readings.save_reading(engine, c, DAY - timedelta(days=1), Reading(3, 3, 3, 3, NOW, "simulator"))
    sources = ("whapi", "simulator")
    assert readings.read_on(engine, [a, b, c, a], DAY, sources) == {a}
    assert readings.read_on(engine, [a, b, c], DAY - timedelta(days=1), sources) == {c}
    assert readings.read_on(engine, [], DAY, sources) == set()
    assert readings.read_from_on(engine, a, DAY, "whapi") and not readings.read_from_on(
        engine, a, DAY, "simulator"
    )
    assert not readings.read_from_on(engine, b, DAY, "whapi")  # a local fallback is not the day's read
