"""Two Cloud API numbers of one Meta business portfolio, end to end against the simulator: over two
simulated days they write to more new people than the portfolio's tier allows, and the simulator's own
log of business-initiated sends shows the tier was never exceeded in any moving 24 h; the messages to
people outside their customer-service window went out as the pool's approved template, and what the
limit held back is accounted for with its cause."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from warmup.clock import ManualClock
from warmup.core.domain import SkipCause
from warmup.core.localtime import local_date_of
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import send_one
from warmup.store import history, numbers, portfolios
from warmup.store.models import OutboundMessage

MONDAY_8AM_SAO_PAULO = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
PORTFOLIO, TIER, LIMIT = "acme", "TIER_50", 50
CONTACTS = 120
TEMPLATE = "  - {name: catch_up, language: en_US, parameters: ['Hi {first_name}']}\n"


class PortfolioFleet:
    def __init__(self, engine: Engine, fleet: Fleet, clock: ManualClock) -> None:
        self.engine, self.fleet, self.clock = engine, fleet, clock
        directory = fleet.plan_path.parent
        rows = "".join(f"+5511977{i:06d},Person{i}\n" for i in range(CONTACTS))
        (directory / "contacts.csv").write_text("phone,name\n" + rows)
        (directory / "pool.yaml").write_text(
            (directory / "pool.yaml").read_text() + "templates:\n" + TEMPLATE
        )
        portfolios.set_portfolio(engine, PORTFOLIO, TIER, clock.now())
        fleet.as_cloud_api(portfolio=PORTFOLIO)
        for phone in fleet.phones:
            fleet.admin("PATCH", f"/_sim/channels/{phone}", json={"portfolio": PORTFOLIO})
        fleet.admin("PUT", f"/_sim/portfolios/{PORTFOLIO}", json={"tier": TIER})
        approved = [{"name": "catch_up", "language": "en_US"}]
        fleet.admin("PUT", "/_sim/cloud/templates", json={"templates": approved})
        self.runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))

    def messages(self) -> list[OutboundMessage]:
        found: list[OutboundMessage] = []
        for number_id in self.fleet.number_ids:
            number = numbers.get_number(self.engine, number_id)
            assert number is not None
            found += history.list_messages(
                self.engine, number_id, local_date_of(self.clock.now(), number.timezone)
            )
        return found

    def run_day(self) -> None:
        """Plan both numbers' local day, then send every message in due order until none is left waiting."""
        for number_id in self.fleet.number_ids:
            number = numbers.get_number(self.engine, number_id)
            assert number is not None
            assert plan_number_day(self.runtime, number_id, local_date_of(self.clock.now(), number.timezone))
        for _ in range(1000):
            waiting = [m for m in self.messages() if m.state in ("planned", "queued")]
            if not waiting:
                return
            message = min(waiting, key=lambda m: max(m.scheduled_at, m.not_before or m.scheduled_at))
            due = max(message.scheduled_at, message.not_before or message.scheduled_at)
            self.clock.set(max(self.clock.now(), due))
            assert message.id is not None
            send_one(
                self.engine, message.id, "w", self.clock, self.runtime.provider_for, plans=self.runtime.plans
            )
        raise AssertionError("the day did not finish")


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[PortfolioFleet]:
    clock = ManualClock(MONDAY_8AM_SAO_PAULO)
    fleet = make_fleet(
        engine,
        clock,
        count=2,
        volume=40,
        max_new=40,
        gap="1m..2m",
        max_per_hour=60,
        timezones=("America/Sao_Paulo", "America/Sao_Paulo"),
    )
    w = PortfolioFleet(engine, fleet, clock)
    yield w
    w.runtime.close()


def test_a_portfolio_never_exceeds_its_tier_in_any_moving_24_hours_by_the_simulators_log(
    world: PortfolioFleet,
) -> None:
    held: dict[str, int] = {}
    templates = sent = 0
    for _ in range(2):  # two local days, 80 new people wanted a day against a shared 50
        world.run_day()
        for m in world.messages():
            sent += m.state == "sent"
            templates += m.state == "sent" and m.template is not None and m.template["name"] == "catch_up"
            if m.state == "skipped" and m.cause:
                held[m.cause] = held.get(m.cause, 0) + 1
            assert not (m.state == "failed" and "131048" in (m.reason or "")), m.reason  # never refused
        world.clock.set(world.clock.now().replace(hour=11, minute=0) + timedelta(days=1))

    log = world.fleet.admin("GET", f"/_sim/cloud/limit-log?portfolio={PORTFOLIO}")["sends"]
    assert log, "the simulator counted no business-initiated send"
    times = [(datetime.fromisoformat(r["at"]), r["to"]) for r in log]
    busiest = max(len({to for at, to in times if end - timedelta(hours=24) < at <= end}) for end, _ in times)
    # never passed in any moving 24 h the log holds; our count may run ahead of Meta's by sends Meta saw
    # inside a window we had not heard of (no inbound webhook in this test), never behind it
    assert LIMIT - 5 <= busiest <= LIMIT
    assert all(r["used"] <= LIMIT for r in log)
    assert templates == sent > 0  # nobody had written to these numbers: every send was the template
    assert held.get(SkipCause.PORTFOLIO.value, 0) > 0, held  # what the tier held back has its cause
