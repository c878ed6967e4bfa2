"""A small fleet for runtime tests: plan, pool and contacts on disk, simulator channels, stored numbers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from warmup.clock import Clock
from warmup.simulator.faults import FaultSpec
from warmup.simulator.model import ChannelSpec, SimConfig
from warmup.simulator.server import SimulatorServer
from warmup.store import ops

PLAN = """\
version: 1
name: test-plan
schedule:
  windows:
    - {{days: daily, hours: "{hours}"}}
ramp:
  steps:
    - {{days: 1-30, volume: {volume}}}
pacing:
  gap: {gap}
  typing: 1s..2s
  max_per_hour: {max_per_hour}
  max_new_contacts_per_day: {max_new}
audience:
  peers: {{reply_probability: {reply_probability}, reply_delay: 1m..5m}}
  contacts: contacts.csv
content: pool.yaml
"""

POOL = """\
version: 1
language: en
openers: ["Hi there!", "Hello, how are you?", "Hey! Long time", "Good day to you"]
replies: ["All good, thanks!", "Fine, and you?", "Great to hear from you"]
"""

CONTACTS = "phone,name\n+5511977770001,Ana\n+5511977770002,Bruno\n+5511977770003,Carla\n"

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
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pool.yaml").write_text(POOL)
    (directory / "contacts.csv").write_text(CONTACTS)
    plan = directory / "plan.yaml"
    plan.write_text(
        PLAN.format(
            volume=volume,
            hours=hours,
            gap=gap,
            max_new=max_new,
            reply_probability=reply_probability,
            max_per_hour=max_per_hour,
        )
    )
    return plan


@dataclass
class Fleet:
    engine: Engine
    sim: SimulatorServer
    base_url: str
    plan_path: Path
    number_ids: list[int]
    phones: list[str]

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.base_url + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def sends(self, channel: str | None = None) -> list[dict[str, Any]]:
        params = {"channel": channel} if channel else {}
        return list(self.admin("GET", "/_sim/sends", params=params)["sends"])

    def set_faults(self, phone: str, **faults: float) -> None:
        self.admin("PUT", "/_sim/faults", json={"channel": phone, "faults": faults})


def fleet_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Body of a ``make_fleet`` fixture: yields ``build(engine, clock, ...) -> Fleet``, stops simulators."""
    servers: list[SimulatorServer] = []

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
        ids = []
        for i, phone in enumerate(phones):
            monkeypatch.setenv(f"SIM_TOKEN_{i}", f"tok-{i}-abcdef")
            ids.append(
                ops.add_number(
                    engine,
                    phone=phone,
                    provider="simulator",
                    token_ref=f"SIM_TOKEN_{i}",
                    plan_name="test-plan",
                    plan_path=str(plan_path),
                    timezone=timezones[i % len(timezones)],
                    registered=registered,
                    base_url=base_url,
                    now=clock.now(),
                )
            )
        return Fleet(engine, sim, base_url, plan_path, ids, phones)

    yield build
    for server in servers:
        server.stop()
