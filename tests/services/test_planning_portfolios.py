"""Planning and `why` with Meta portfolios: a portfolio number's day is also capped by what its portfolio
has left in the moving 24 h (one day alone or a batch, the same), and `why` says so (real store and a
real simulator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.clock import ManualClock
from warmup.core import portfolio as core_portfolio
from warmup.core.localtime import local_date_of
from warmup.services import admin
from warmup.services.planning import plan_number_day, plan_number_days
from warmup.services.runtime import ProviderPool, Runtime
from warmup.store import claims, history, outcomes, portfolios, tables
from warmup.store.days import get_day_plan

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _join(engine: Engine, number_ids: list[int], name: str = "acme") -> None:
    """Put numbers of the simulator fleet in a portfolio behind the fleet sync's back (planning and the
    claim only read the store; which API a number speaks does not change the rule)."""
    portfolios.set_portfolio(engine, name, "TIER_50", MONDAY_NOON)
    with engine.begin() as conn:
        conn.execute(
            sa.update(tables.NUMBERS).where(tables.NUMBERS.c.id.in_(number_ids)).values(portfolio=name)
        )


@pytest.mark.parametrize("batch", [False, True])
def test_a_portfolio_number_s_quota_is_capped_by_what_its_portfolio_has_left(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    monkeypatch.setitem(core_portfolio.TIER_LIMITS, "TIER_50", 5)
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, volume=8, timezones=("UTC", "UTC", "UTC"))
    first, second, alone = fleet.number_ids
    _join(engine, [first, second])
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    try:
        day = local_date_of(clock.now(), "UTC")
        if batch:
            results = plan_number_days(runtime, [first, second, alone], day)
        else:
            results = [plan_number_day(runtime, n, day) for n in (first, second, alone)]
        assert [r.decision.quota for r in results if r.decision is not None] == [5, 5, 8]
        capped = get_day_plan(engine, first, day)
        assert capped is not None and capped.action == "cap" and capped.next_plan_day == capped.plan_day
        [reason] = [r for r in capped.reasons if r["rule"] == "portfolio"]
        assert reason["text"] == "portfolio acme: 5 of TIER_50 left in the moving 24 h: quota 8 -> 5"
        free = get_day_plan(engine, alone, day)
        assert free is not None and free.quota == 8 and all(r["rule"] != "portfolio" for r in free.reasons)

        # the claim holds the portfolio to 5 recipients, whatever the two days planned (5 + 5)
        statuses = []
        for number in (first, second):
            for m in history.list_messages(engine, number, day):
                at = max(clock.now(), m.scheduled_at)
                result = claims.claim(engine, m.id or 0, "w", at)
                statuses.append(result.status.value)
                if result.claimed:
                    assert outcomes.record_sent(engine, m.id or 0, f"wamid.{m.id}", at)
        sent = [
            m for n in (first, second) for m in history.list_messages(engine, n, day) if m.state == "sent"
        ]
        assert len({m.recipient for m in sent}) == 5  # the second number writes to the first: a sixth
        skipped = [
            m for n in (first, second) for m in history.list_messages(engine, n, day) if m.state == "skipped"
        ]
        assert skipped and {m.cause for m in skipped} == {"portfolio_limit"}
        assert statuses.count("portfolio_limit") == len(skipped)

        explanation = admin.explain(engine, fleet.phones[0], clock.now() + timedelta(hours=1))
        lines = explanation.lines()
        assert any(line.startswith("  - portfolio (cap): acme: 5 of TIER_50 left") for line in lines), lines
        [portfolio_line] = [line for line in lines if line.startswith("Portfolio ")]
        assert (
            "/ 5 unique business-initiated recipients in the moving 24 h (TIER_50, set in the fleet file)"
            in (portfolio_line)
        )
        assert not any(
            line.startswith("Portfolio ")
            for line in admin.explain(engine, fleet.phones[2], clock.now()).lines()
        )
        [use] = admin.portfolio_uses(engine, clock.now() + timedelta(hours=1))
        assert (use.name, use.limit, use.used) == ("acme", 5, len({m.recipient for m in sent}))
    finally:
        runtime.close()
