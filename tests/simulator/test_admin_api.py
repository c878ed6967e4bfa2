"""The `/_sim/` admin routes (`warmup/simulator/admin_api.py`) over real HTTP."""

from __future__ import annotations

from tests.simulator.model_fixture import T0, B
from tests.simulator.server_fixture import Sim, assert_error, sim, text

__all__ = ["sim"]


def test_admin_channels_sends_reset_and_clock(sim: Sim) -> None:
    duplicate = sim.admin.post(
        "/_sim/channels", json={"token": "tok-a", "phone": "+5511999990099", "registered": "2026-01-01"}
    )
    assert duplicate.status_code == 409
    assert (
        sim.admin.post(
            "/_sim/channels", json={"token": "x", "phone": "oops", "registered": "2026-01-01"}
        ).status_code
        == 400
    )
    assert sim.admin.get("/_sim/channels/+5500000000000").status_code == 404
    assert len(sim.admin.get("/_sim/channels").json()["channels"]) == 3
    assert "tok-" not in sim.admin.get("/_sim/channels").text
    sim.client("tok-a").post("/messages/text", json=text())
    sim.client("tok-b").post("/messages/text", json=text())
    assert [s["channel"] for s in sim.sends(channel=B.phone)] == [B.phone]
    first_seq = sim.sends()[0]["seq"]
    assert [s["channel"] for s in sim.sends(after=first_seq)] == [B.phone]
    assert sim.admin.get("/_sim/clock").json()["now"] == T0.isoformat()
    patched = sim.admin.patch(
        "/_sim/channels/+5511999990001", json={"registered": "2026-11-20", "meter": False}
    )
    assert patched.json()["age_days"] == 3 and patched.json()["meter"] is False
    assert sim.admin.post("/_sim/reset", json={"seed": 9}).json() == {"reset": True, "seed": 9}
    assert sim.admin.get("/_sim/channels").json()["channels"] == []
    assert sim.sends() == []
    assert_error(sim.client("tok-a").get("/health"), 401)
