"""`warmup status` shows each Meta portfolio's use of its messaging limit: used / limit in the moving
24 h, the tier and where it comes from (real store, the command line end to end)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from tests.fleet_fixture import write_plan
from warmup.cli.main import _register, app
from warmup.core.domain import Reading
from warmup.store import numbers, readings

_register()
runner = CliRunner()

FLEET = """\
numbers:
  - phone: "+5511999990001"
    provider: cloud_api
    phone_number_id: "1001"
    token: ${CLI_META_TOKEN}
    plan: plans/plan.yaml
    timezone: UTC
    portfolio: acme
  - phone: "+5511999990002"
    provider: cloud_api
    phone_number_id: "1002"
    token: ${CLI_META_TOKEN}
    plan: plans/plan.yaml
    timezone: UTC
    portfolio: beta
portfolios:
  acme: {tier: TIER_1K}
  beta: {}
"""


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_status_lists_each_portfolio_with_its_use_and_the_source_of_its_tier(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_plan(tmp_path / "plans")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    monkeypatch.setenv("CLI_META_TOKEN", "meta-token-value")
    monkeypatch.setenv("WARMUP_CLOCK", "")
    monkeypatch.setenv("COLUMNS", "250")
    url = engine.url.render_as_string(hide_password=False)
    code, out = run("apply", str(fleet), "--database-url", url)
    assert code == 0 and "add portfolio acme: tier TIER_1K" in out
    code, out = run("status", "--database-url", url)
    assert code == 0
    assert (
        "portfolio acme: 0 / 1,000 unique business-initiated recipients in the moving 24 h "
        "(TIER_1K, set in the fleet file)"
    ) in out
    assert (
        "portfolio beta: 0 / 250 unique business-initiated recipients in the moving 24 h (TIER_250 assumed"
        in out
    )
    beta = numbers.get_number(engine, phone="+5511999990002")
    assert beta is not None and beta.id is not None
    now = datetime.now(UTC)
    readings.save_reading(
        engine, beta.id, now.date(), Reading(3, 3, 3, 3, now, source="cloud_api", tier="TIER_10K")
    )
    code, out = run("status", "--database-url", url)
    assert (
        "portfolio beta: 0 / 10,000 unique business-initiated recipients in the moving 24 h "
        f"(TIER_10K, as Meta reported it on {now:%Y-%m-%d %H:%M} UTC)"
    ) in out
