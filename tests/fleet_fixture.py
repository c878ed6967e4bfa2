"""A small fleet for runtime tests: plan, pool and contacts on disk, simulator channels, stored numbers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from warmup.clock import Clock
from warmup.simulator.channels import ChannelSpec
from warmup.simulator.faults import FaultSpec
from warmup.simulator.model import SimConfig
from warmup.simulator.server import SimulatorServer
from warmup.store.db import Engine
from warmup.store.numbers import add_number
from warmup.store.tables import NUMBERS
from warmup.testing.fleet_setup import (
    OPENERS,
    REPLIES,
    PlanValues,
    pool_yaml,
    simulator_numbers,
    write_plan_files,
)
from warmup.testing.sim_admin import SimulatorAdmin

PLAN_NAME = "test-plan"
CONTACTS = (("+5511977770001", "Ana"), ("+5511977770002", "Bruno"), ("+5511977770003", "Carla"))
PHONES = ("+5511999990001", "+5511999990002", "+5511999990003")


def write_plan(
    directory: Path,
    *,
    volume: int = 10,
    hours: str = "08:00-20:00",
    gap: str = "2m..6m",
    max_new: int = 10,
    reply_probability: float = 0.0,
    max_per_hour: int = 30,
) -> Path:
    """A 30-day plan ``test-plan`` with one daily window, its pool (four openers, three replies) and
    three contacts, in ``directory``."""
    plan = PlanValues(
        name=PLAN_NAME,
        volume=volume,
        ramp_days=30,
        hours=hours,
        gap=gap,
        typing="1s..2s",
        max_per_hour=max_per_hour,
        max_new_contacts=max_new,
        reply_probability=reply_probability,
        reply_delay="1m..5m",
    )
    return write_plan_files(directory, plan, CONTACTS, pool_yaml(OPENERS[:4], REPLIES[:3]))


@dataclass
class Fleet:
    engine: Engine
    sim: SimulatorServer
    base_url: str
    plan_path: Path
    number_ids: list[int]
    phones: list[str]
    sim_admin: SimulatorAdmin = field(init=False)

    def __post_init__(self) -> None:
        self.sim_admin = SimulatorAdmin(self.base_url, timeout=10)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.sim_admin.request(method, path, **kwargs)

    def sends(self, channel: str | None = None) -> list[dict[str, Any]]:
        return self.sim_admin.sends(channel)

    def set_faults(self, phone: str, **faults: float) -> None:
        self.sim_admin.set_faults(faults, channel=phone)

    def as_cloud_api(self, count: int | None = None, portfolio: str | None = None) -> None:
        """Make the first ``count`` numbers (all by default) Meta Cloud API numbers on the same simulator,
        whose phone-number-id is the phone's digits; with ``portfolio``, of that business portfolio."""
        values: dict[str, Any] = {"provider": "cloud_api"}
        if portfolio is not None:
            values["portfolio"] = portfolio
        with self.engine.begin() as conn:
            for number_id, phone in list(zip(self.number_ids, self.phones, strict=True))[:count]:
                conn.execute(
                    sa.update(NUMBERS)
                    .where(NUMBERS.c.id == number_id)
                    .values(phone_number_id=phone.lstrip("+"), **values)
                )


def fleet_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Body of a ``make_fleet`` fixture: yields ``build(engine, clock, ...) -> Fleet``, stops simulators."""
    servers: list[SimulatorServer] = []
    fleets: list[Fleet] = []

    def build(
        engine: Engine,
        clock: Clock,
        *,
        count: int = 3,
        timezones: tuple[str, ...] = ("America/Sao_Paulo", "Europe/Berlin", "Asia/Tokyo"),
        registered: date = date(2026, 10, 1),
        forbidden: tuple[str, ...] = (),
        **plan_options: Any,
    ) -> Fleet:
        plan_path = write_plan(tmp_path / "plans", **plan_options)
        phones = list(PHONES[:count])
        channels = tuple(
            ChannelSpec(
                token=f"tok-{i}-abcdef",
                phone=phone,
                registered=registered,
                forbidden=frozenset(p.lstrip("+") for p in forbidden),
            )
            for i, phone in enumerate(phones)
        )
        sim = SimulatorServer(SimConfig(seed=7, channels=channels, faults=FaultSpec()), clock=clock)
        base_url = sim.start()
        servers.append(sim)
        numbers = simulator_numbers(
            phones,
            base_url=base_url,
            plan_name=PLAN_NAME,
            plan_path=plan_path,
            timezones=timezones,
            registered=registered,
        )
        ids = []
        for i, number in enumerate(numbers):
            monkeypatch.setenv(number["token_ref"], f"tok-{i}-abcdef")
            ids.append(add_number(engine, now=clock.now(), **number))
        fleet = Fleet(engine, sim, base_url, plan_path, ids, phones)
        fleets.append(fleet)
        return fleet

    yield build
    for fleet in fleets:
        fleet.sim_admin.close()
    for server in servers:
        server.stop()
