"""Faults injected per API call (`warmup/simulator/api_call.py`), over real HTTP."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.simulator.model_fixture import T0, A
from tests.simulator.server_fixture import Sim, assert_error, sim, text
from warmup.clock import ManualClock
from warmup.simulator import FaultSpec, SimConfig, SimulatorServer

__all__ = ["sim"]


def test_fault_rate_limit_has_retry_after_and_sends_nothing(sim: Sim) -> None:
    sim.faults(rate_limit=1.0, retry_after=7)
    response = sim.client().post("/messages/text", json=text())
    assert_error(response, 429)
    assert response.headers["retry-after"] == "7"
    assert sim.sends() == []


def test_fault_server_error_and_html(sim: Sim) -> None:
    sim.faults(server_error=1.0)
    response = sim.client().post("/messages/text", json=text())
    assert (
        response.status_code in (500, 502, 503) and response.json()["error"]["code"] == response.status_code
    )
    sim.faults(html=1.0)
    response = sim.client().get("/health")
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert b"<html>" in response.content
    assert sim.sends() == []


def test_fault_timeouts_before_and_after_the_send(sim: Sim) -> None:
    sim.faults(timeout=1.0, hold_seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        sim.client(timeout=0.2).post("/messages/text", json=text(body="lost"))
    assert sim.sends() == []
    sim.faults(timeout_after_send=1.0, hold_seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        sim.client(timeout=0.2).post("/messages/text", json=text(body="sent anyway"))
    assert [s["body"] for s in sim.sends()] == ["sent anyway"]


@pytest.mark.parametrize("kind", ["malformed", "truncated", "empty"])
def test_fault_garbled_bodies_still_perform_the_send(sim: Sim, kind: str) -> None:
    sim.faults(**{kind: 1.0})
    response = sim.client().post("/messages/text", json=text())
    assert response.status_code == 201
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    if kind == "empty":
        assert response.content == b""
    assert len(sim.sends()) == 1


def test_fault_latency(sim: Sim) -> None:
    sim.faults(latency=1.0, latency_ms="300-300")
    started = time.monotonic()
    assert sim.client().get("/health").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_faults_per_channel_and_per_operation(sim: Sim) -> None:
    sim.faults(channel=A.phone, rate_limit=1.0, operations=["send"])
    assert sim.client("tok-a").post("/messages/text", json=text()).status_code == 429
    assert sim.client("tok-a").get("/health").status_code == 200
    assert sim.client("tok-b").post("/messages/text", json=text()).status_code == 201
    listed = sim.admin.get("/_sim/faults").json()
    assert listed["channels"]["+5511999990001"]["rate_limit"] == 1.0
    assert listed["global"]["rate_limit"] == 0.0
    sim.admin.delete("/_sim/faults", params={"channel": A.phone})
    assert sim.client("tok-a").post("/messages/text", json=text()).status_code == 201
    bad = sim.admin.put("/_sim/faults", json={"faults": {"rate_limit": 0.7, "timeout": 0.7}})
    assert bad.status_code == 400


def test_fault_probability_is_a_probability() -> None:
    clock = ManualClock(T0)
    config = SimConfig(seed=1, channels=(A,), faults=FaultSpec(server_error=0.3))
    with SimulatorServer(config, clock=clock) as server, httpx.Client(base_url=server.base_url) as client:
        codes = [
            client.get("/health", headers={"Authorization": "Bearer tok-a"}).status_code for _ in range(200)
        ]
    failures = sum(code >= 500 for code in codes)
    assert 30 < failures < 90
