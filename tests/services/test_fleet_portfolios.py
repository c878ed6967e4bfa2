"""The fleet file's Meta business portfolios: `portfolio:` on cloud_api numbers, the `portfolios:`
section (tier optional), located errors, and an apply that stores them (real store)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import write_plan
from warmup.files.problems import PlanError
from warmup.services.fleet import apply_changes, load_fleet, plan_changes
from warmup.store import portfolios
from warmup.store.audit import list_audit
from warmup.store.numbers import get_number

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ENV = {"TOK_A": "token-value-a", "TOK_B": "token-value-b"}

CLOUD = """\
  - phone: "{phone}"
    provider: cloud_api
    phone_number_id: "{pnid}"
    token: ${{TOK_A}}
    plan: plans/plan.yaml
    timezone: UTC
{extra}"""

WHAPI = """\
  - phone: "+5511999990009"
    provider: whapi
    token: ${{TOK_B}}
    plan: plans/plan.yaml
    timezone: UTC
{extra}"""


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    write_plan(tmp_path / "plans")
    return tmp_path


def write(fleet_dir: Path, numbers: str, portfolios_section: str = "") -> Path:
    path = fleet_dir / "fleet.yaml"
    path.write_text(f"numbers:\n{numbers}{portfolios_section}")
    return path


def cloud(index: int, portfolio: str | None = "acme") -> str:
    extra = f"    portfolio: {portfolio}\n" if portfolio else ""
    return CLOUD.format(phone=f"+551199999000{index}", pnid=1000 + index, extra=extra)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PlanError) as info:
        load_fleet(path, ENV)
    return [str(p) for p in info.value.problems]


def test_cloud_api_numbers_name_their_portfolio_and_the_file_declares_its_tier(fleet_dir: Path) -> None:
    path = write(
        fleet_dir,
        cloud(1) + cloud(2) + cloud(3, "meta-read") + cloud(4, None),
        "portfolios:\n  acme: {tier: 1k}\n  meta-read: {}\n  bare:\n",
    )
    fleet = load_fleet(path, ENV)
    assert [n.portfolio for n in fleet.numbers] == ["acme", "acme", "meta-read", None]
    assert dict(fleet.portfolios) == {"acme": "TIER_1K", "meta-read": None, "bare": None}


def test_a_portfolio_on_a_whapi_number_or_an_undeclared_one_is_a_located_error(fleet_dir: Path) -> None:
    path = write(
        fleet_dir,
        cloud(1, "acme") + cloud(2, "typo") + WHAPI.format(extra="    portfolio: acme\n"),
        "portfolios:\n  acme: {tier: TIER_250}\n",
    )
    problems = problems_of(path)
    assert len(problems) == 2, problems
    assert any(
        p.startswith(f"{path}:15:")
        and "numbers[1].portfolio" in p
        and "'typo' is not declared" in p
        and "declared: acme" in p
        for p in problems
    ), problems
    assert any(
        p.startswith(f"{path}:21:") and "numbers[2].portfolio" in p and "only a cloud_api number" in p
        for p in problems
    ), problems


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("portfolios:\n  acme: {tier: TIER_3K}\n", "tier must be one of TIER_50, TIER_250"),
        ("portfolios:\n  acme: {tier: true}\n", "tier must be one of"),
        ("portfolios:\n  acme: {limit: 250}\n", "acme.limit"),
        ("portfolios:\n  'no spaces': {}\n", "a portfolio name is letters, digits"),
        ("portfolios: [acme]\n", "portfolios"),
    ],
)
def test_a_bad_portfolios_section_is_refused_with_its_place(
    fleet_dir: Path, section: str, expected: str
) -> None:
    path = write(fleet_dir, cloud(1, None), section)
    problems = problems_of(path)
    assert any(expected in p and p.startswith(f"{path}:") for p in problems), problems


def test_no_portfolio_declared_says_so(fleet_dir: Path) -> None:
    (problem,) = problems_of(write(fleet_dir, cloud(1)))
    assert "numbers[0].portfolio" in problem and "none is declared" in problem


def test_apply_stores_portfolios_before_their_numbers_and_is_idempotent(
    engine: Engine, fleet_dir: Path
) -> None:
    path = write(fleet_dir, cloud(1) + cloud(2), "portfolios:\n  acme: {tier: TIER_1K}\n  spare: {}\n")
    changes = plan_changes(engine, load_fleet(path, ENV))
    described = [c.describe() for c in changes]
    assert described[:2] == [
        "add portfolio acme: tier TIER_1K",
        "add portfolio spare: tier Meta's (read with its numbers' readings)",
    ]
    apply_changes(engine, changes, now=NOW)
    assert portfolios.stored_tiers(engine) == {"acme": "TIER_1K", "spare": None}
    number = get_number(engine, phone="+5511999990001")
    assert number is not None and number.portfolio == "acme"
    assert plan_changes(engine, load_fleet(path, ENV)) == []
    # the tier goes back to Meta's, a number moves, the spare portfolio goes
    path = write(fleet_dir, cloud(1) + cloud(2, "other"), "portfolios:\n  acme: {}\n  other: {tier: 250}\n")
    changes = plan_changes(engine, load_fleet(path, ENV))
    assert [c.describe() for c in changes] == [
        "set portfolio acme: tier TIER_1K -> Meta's (read with its numbers' readings)",
        "add portfolio other: tier TIER_250",
        "update +5511999990002: portfolio acme -> other",
        "drop portfolio spare: no longer in the fleet file",
    ]
    apply_changes(engine, changes, now=NOW)
    assert portfolios.stored_tiers(engine) == {"acme": None, "other": "TIER_250"}
    assert plan_changes(engine, load_fleet(path, ENV)) == []
    actions = [row.action for row in reversed(list_audit(engine, None, limit=50))]
    assert actions.count("fleet_add_portfolio") == 3 and "fleet_drop_portfolio" in actions


def test_a_retired_number_lets_its_portfolio_go(engine: Engine, fleet_dir: Path) -> None:
    first = write(fleet_dir, cloud(1) + cloud(2), "portfolios:\n  acme: {}\n")
    apply_changes(engine, plan_changes(engine, load_fleet(first, ENV)), now=NOW)
    second = write(fleet_dir, cloud(1, None))
    changes = plan_changes(engine, load_fleet(second, ENV))
    assert [c.kind for c in changes] == ["update", "retire", "drop_portfolio"]
    apply_changes(engine, changes, now=NOW)
    retired = get_number(engine, phone="+5511999990002")
    assert retired is not None and retired.state == "retired" and retired.portfolio is None
    assert portfolios.stored_tiers(engine) == {}
    assert plan_changes(engine, load_fleet(second, ENV)) == []
