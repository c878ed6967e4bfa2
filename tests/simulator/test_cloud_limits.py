"""Portfolio messaging limits over real HTTP: unique users in a moving 24 h, shared by the portfolio's
numbers, checked from the simulator's limit log."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from tests.simulator.cloud_fixture import P1, P2, SOLO, cloud_sim, meta_error, template, text
from tests.simulator.model_fixture import HOSTILE, T0, contact
from warmup.simulator import CloudConfig

QUIET = replace(HOSTILE, block_rate=0.0)  # nobody answers (no window opens), nobody blocks


def moving_24h_peaks(log: list[dict[str, Any]]) -> list[tuple[int, int | None, int]]:
    """For each logged send: (unique users of its portfolio in the 24 h ending with it, its limit, `used`)."""
    peaks = []
    for i, record in enumerate(log):
        at = datetime.fromisoformat(record["at"])
        users = {
            r["to"]
            for r in log[: i + 1]  # the log is in acceptance order
            if r["portfolio"] == record["portfolio"]
            and at - timedelta(hours=24) < datetime.fromisoformat(r["at"]) <= at
        }
        peaks.append((len(users), record["limit"], record["used"]))
    return peaks


def test_two_numbers_share_the_tier_and_never_exceed_it_in_any_moving_24h() -> None:
    cloud = CloudConfig(portfolios={"acme": "TIER_50"}, auto_upgrade=False)
    with cloud_sim(QUIET, cloud) as sim:
        refused: list[tuple[str, dict[str, Any]]] = []
        accepted = 0
        n = 0
        counted = ""  # a user the portfolio reached in the last 24 h
        reached_again = 0
        restricted_seen = False
        for step in range(3 * 48):  # three days, every 30 minutes
            for spec in (P1, P2):
                n += 1
                response = sim.send(spec, template(contact(n)))
                if response.status_code == 200:
                    accepted += 1
                    counted = contact(n)
                else:
                    refused.append((sim.clock.now().isoformat(), meta_error(response, 400, 131048)))
            if step % 6 == 0 and counted:  # a user reached in the last 24 h counts once: never refused
                assert sim.send(P2, template(counted)).status_code == 200
                reached_again += 1
            if refused and not restricted_seen:
                restricted_seen = True
                assert sim.phone(P1)["status"] == sim.phone(P2)["status"] == "RESTRICTED"
                assert sim.phone(SOLO)["status"] == "CONNECTED"  # its own portfolio
                assert sim.send(SOLO, template(contact(10_000))).status_code == 200
            sim.clock.advance(timedelta(minutes=30))

        log = sim.limit_log(portfolio="acme")
        peaks = moving_24h_peaks(log)
        assert all(users <= 50 and limit == 50 and used == users for users, limit, used in peaks)
        assert max(users for users, _, _ in peaks) == 50  # the tier is reached, then cut
        first_day = {r["to"] for r in log if datetime.fromisoformat(r["at"]) < T0 + timedelta(hours=24)}
        assert len(first_day) == 50
        assert any(
            datetime.fromisoformat(r["at"]) >= T0 + timedelta(days=2) for r in log
        )  # the window moved on
        assert {r["channel"] for r in log} == {P1.phone, P2.phone}
        assert refused and all("messaging limit" in error["error_data"]["details"] for _, error in refused)
        assert len({r["message_id"] for r in log}) == len(log) == accepted + reached_again
        # every accepted template to P1/P2 is in the limit log (none was inside a customer-service window)
        sent = {
            s["message_id"]
            for s in sim.admin.get("/_sim/sends").json()["sends"]
            if s["channel"] != SOLO.phone
        }
        assert sent == {r["message_id"] for r in log}
        (acme,) = [p for p in sim.admin.get("/_sim/portfolios").json()["portfolios"] if p["name"] == "acme"]
        assert acme["tier"] == "TIER_50" and acme["limit"] == 50 and acme["used"] <= 50
        assert acme["numbers"] == [P1.phone, P2.phone]


def test_inside_the_window_nothing_counts_and_text_is_allowed() -> None:
    friendly = replace(QUIET, friendliness=(1000.0, 0.001))  # every contact answers every message
    cloud = CloudConfig(portfolios={"acme": "TIER_50"}, auto_upgrade=False)
    with cloud_sim(friendly, cloud) as sim:
        for i in range(50):
            assert sim.send(P1, template(contact(i))).status_code == 200
        meta_error(sim.send(P2, template(contact(50))), 400, 131048)
        sim.clock.advance(timedelta(hours=1))  # every contact has answered: their windows are open
        sim.tick()
        for i in range(50):
            response = sim.send(P1, text(contact(i), "thanks!"))
            assert response.status_code == 200, response.text
        meta_error(sim.send(P2, text(contact(1))), 400, 131047)  # they wrote to P1, not to P2
        assert len(sim.limit_log()) == 50
        sim.clock.advance(
            timedelta(hours=26)
        )  # windows closed (their answers to the texts too), 24 h moved on
        meta_error(sim.send(P1, text(contact(1))), 400, 131047)
        assert sim.send(P1, template(contact(1))).status_code == 200
        assert sim.phone(P1)["status"] == "CONNECTED"
