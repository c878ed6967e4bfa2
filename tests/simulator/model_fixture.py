"""Shared by the model-level simulator tests: channels, a fixed start time, behaviours, small helpers."""

from __future__ import annotations

from datetime import UTC, date, datetime

from warmup.simulator import Behaviour, ChannelSpec, SimConfig, SimModel

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
A = ChannelSpec("tok-a", "+5511999990001", date(2026, 10, 1), name="A")
B = ChannelSpec("tok-b", "+5511999990002", date(2026, 10, 1), name="B")
FRIENDLY = Behaviour(friendliness=(1000.0, 0.001))  # every contact answers every message
HOSTILE = Behaviour(friendliness=(0.001, 1000.0))  # nobody ever answers


def contact(i: int) -> str:
    return f"+55219{i:07d}"


def model(*specs: ChannelSpec, seed: int = 7, **kw: object) -> SimModel:
    return SimModel(SimConfig(seed=seed, channels=specs or (A, B), **kw))  # type: ignore[arg-type]


def send(m: SimModel, token: str, to: str, now: datetime, body: str = "hello") -> dict[str, object]:
    return m.send_text(token, {"to": to, "body": body, "typing_time": 2}, now)


def reading(m: SimModel, token: str, now: datetime) -> dict[str, object]:
    return m.meter_compute(token, now)
