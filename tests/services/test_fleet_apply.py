"""Issue 14 items 4 and 8: validation refuses everything the store would, an apply is one transaction
(a failure or a kill -9 leaves the fleet as it was), and a 10,000-number fleet file loads and applies
while YAML bombs stay refused (real store, both databases)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from tests.fleet_fixture import write_plan
from warmup.files.problems import PlanError
from warmup.services.fleet import (
    CONFIG_FIELDS,
    ApplyFailed,
    apply_changes,
    current_admins,
    load_fleet,
    plan_changes,
)
from warmup.store import fleet_sync
from warmup.store import numbers as store_numbers
from warmup.store.models import metadata
from warmup.store.numbers import COLUMN_LIMITS, add_number, list_numbers

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LONG_NAME = "WHAPI_TOKEN_OF_THE_SALES_TEAM_NUMBER_" + "_".join(["ONE"] * 9)  # 70 characters
ENV = {"TOK_A": "token-value-a", LONG_NAME: "token-value-long"}


def entry(phone: str, **fields: str) -> str:
    values = {
        "provider": "simulator",
        "token": "${TOK_A}",
        "plan": "plans/plan.yaml",
        "timezone": "America/Sao_Paulo",
        "base_url": "http://127.0.0.1:9",
        **fields,
    }
    return f'  - phone: "{phone}"\n' + "".join(f"    {key}: {value}\n" for key, value in values.items())


def fleet_text(entries: list[str], admins: str = '["+5511988880000"]', portfolios: str = "") -> str:
    return "numbers:\n" + "".join(entries) + portfolios + f"admins: {admins}\n"


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    write_plan(tmp_path / "plans")
    return tmp_path


def write(fleet_dir: Path, text: str, name: str = "fleet.yaml") -> Path:
    path = fleet_dir / name
    path.write_text(text)
    return path


def problems_of(path: Path, env: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(PlanError) as info:
        load_fleet(path, env)
    return [str(p) for p in info.value.problems]


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal snapshots are the same store."""
    with engine.connect() as conn:
        return {
            table.name: sorted((tuple(map(repr, row)) for row in conn.execute(sa.select(table))), key=repr)
            for table in metadata.sorted_tables
        }


# ------------------------------------------------------------------------ validation = the schema


CLOUD = {"provider": "cloud_api", "phone_number_id": '"1234567"'}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"base_url": "http://h.example/" + "a" * 300}, "base_url", "at most 255 characters"),
        ({"meter_url": "http://h.example/" + "a" * 300}, "meter_url", "at most 255 characters"),
        ({"token": "${" + LONG_NAME + "}"}, "token", "capital letters, digits and _ (at most 64"),
        ({"token": "${tok_a}"}, "token", "capital letters, digits and _"),
        ({**CLOUD, "phone_number_id": f'"{"1" * 65}"', "base_url": "null"}, "phone_number_id", "not allowed"),
        ({**CLOUD, "portfolio": "p" * 65, "base_url": "null"}, "portfolio", "at most 64"),
        ({"base_url": '"http://h.example/a\\0b"'}, "base_url", "expected an http(s) URL"),
        ({"base_url": '"http://h.example/\\ud800"'}, "base_url", "expected an http(s) URL"),
        ({"base_url": '"http://h.example/a\\tb"'}, "base_url", "expected an http(s) URL"),
        ({"meter_url": '"http://h.example/\\ud800"'}, "meter_url", "expected an http(s) URL"),
        ({"plan": '"plans/plan\\0.yaml"'}, "plan", "U+0000"),
        ({"timezone": '"UTC\\0"'}, "timezone", "U+0000"),
        ({"token": '"${TOK_A\\u0085}"'}, "token", "U+0085"),
    ],
)
def test_every_schema_limit_is_refused_at_its_line(
    fleet_dir: Path, fields: dict[str, str], field: str, words: str
) -> None:
    """What PostgreSQL would refuse (or SQLite silently store) is a located problem before anything is
    written, so `--dry-run` and validation refuse it too."""
    env = {**ENV, "tok_a": "token-value-lower"}
    path = write(fleet_dir, fleet_text([entry("+5511999990001"), entry("+5511999990002", **fields)]))
    problems = problems_of(path, env)
    assert problems, fields
    located = [p for p in problems if f"numbers[1].{field}" in p]
    assert located and words in located[0], problems
    assert located[0].startswith(f"{path}:")
    assert all("token-value" not in p for p in problems)


def test_a_plan_path_longer_than_the_column_is_refused(fleet_dir: Path) -> None:
    deep = fleet_dir / ("d" * 200) / ("e" * 200) / ("f" * 120)
    write_plan(deep)
    ref = str(deep.relative_to(fleet_dir) / "plan.yaml")
    path = write(fleet_dir, fleet_text([entry("+5511999990001", plan=ref)]))
    (problem,) = problems_of(path)
    assert "numbers[0].plan" in problem and "at most 500 are stored" in problem
    assert problem.startswith(f"{path}:5:"), problem


def test_a_plan_name_longer_than_the_column_is_refused_in_the_plan(fleet_dir: Path) -> None:
    plan = fleet_dir / "plans" / "plan.yaml"
    plan.write_text(plan.read_text().replace("name: test-plan", "name: " + "n" * 101, 1))
    path = write(fleet_dir, fleet_text([entry("+5511999990001"), entry("+5511999990002")]))
    problems = problems_of(path)
    assert len(problems) == 1, "a plan shared by two numbers reports its problem once"
    assert problems[0].startswith(f"{plan}:") and "name" in problems[0]


def test_every_limited_column_of_the_fleet_file_is_checked() -> None:
    """Each text column the fleet file writes has a check above, or cannot be exceeded at all."""
    limited = {name for name in (*CONFIG_FIELDS, "phone") if name in COLUMN_LIMITS}
    covered = {"base_url", "meter_url", "token_ref", "phone_number_id", "portfolio", "plan_path", "plan_name"}
    unreachable = {
        "phone": COLUMN_LIMITS["phone"] >= 16,  # E.164: + and at most 15 digits
        "provider": max(map(len, ("whapi", "cloud_api", "simulator"))) <= COLUMN_LIMITS["provider"],
        "timezone": max(map(len, available_timezones())) <= COLUMN_LIMITS["timezone"],
    }
    assert all(unreachable.values())
    assert limited == covered | set(unreachable)


def test_what_slips_past_validation_is_refused_by_the_store_and_rolls_back(
    engine: Engine, fleet_dir: Path
) -> None:
    """The store's own check (here a base_url over its column, which SQLite would have stored) fails
    the apply at the third number, and numbers 1-2 written before it are rolled back."""
    phones = [f"+551199999000{i}" for i in (1, 2, 3)]
    old = write(fleet_dir, fleet_text([entry(p) for p in phones]), "old.yaml")
    apply_changes(engine, plan_changes(engine, load_fleet(old, ENV)), now=NOW)
    new = write(fleet_dir, fleet_text([entry(p, timezone="Asia/Tokyo") for p in phones]), "new.yaml")
    changes = plan_changes(engine, load_fleet(new, ENV))
    assert [c.kind for c in changes] == ["update"] * 3
    third = changes[2]
    assert third.spec is not None
    changes[2] = replace(third, spec=replace(third.spec, base_url="http://h/" + "a" * 300))
    before = snapshot(engine)
    with pytest.raises(ApplyFailed) as info:
        apply_changes(engine, changes, now=NOW)
    assert "rolled back" in str(info.value) and "base_url" in str(info.value)
    assert snapshot(engine) == before


# --------------------------------------------------------------------------------- one transaction


def old_and_new(fleet_dir: Path, count: int) -> tuple[Path, Path]:
    """Fleet A (``count`` numbers, admin X) and fleet B (the same numbers in another zone, one
    retired, two added, X revoked, a portfolio added)."""
    phones = [f"+55119{i:08d}" for i in range(count)]
    old = write(fleet_dir, fleet_text([entry(p) for p in phones]), "old.yaml")
    new_entries = [entry(p, timezone="Europe/Berlin") for p in phones[1:]]
    new_entries += [entry("+5521999990001"), entry("+5521999990002")]
    new_entries.append(
        entry(
            "+5521999990003", provider="cloud_api", phone_number_id='"99"', portfolio="acme", base_url="null"
        )
    )
    portfolios = "portfolios:\n  acme: {tier: TIER_1K}\n"
    new = write(fleet_dir, fleet_text(new_entries, admins="[]", portfolios=portfolios), "new.yaml")
    return old, new


def database_error() -> OperationalError:
    """What SQLAlchemy raises, its text holding the statement and its parameters."""
    return OperationalError(
        "UPDATE numbers SET base_url=?", {"base_url": "http://secret"}, Exception("disk I/O")
    )


def test_a_database_error_at_the_third_number_changes_nothing(
    engine: Engine, fleet_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Numbers 1-2 updated, number 3 fails at the database: no number, portfolio, admin or audit row
    of the apply stays, and the error names no SQL or parameter."""
    old, new = old_and_new(fleet_dir, 5)
    apply_changes(engine, plan_changes(engine, load_fleet(old, ENV)), now=NOW)
    before = snapshot(engine)
    changes = plan_changes(engine, load_fleet(new, ENV))
    kinds = [c.kind for c in changes]
    assert kinds.count("update") == 4 and "add" in kinds and "retire" in kinds and "admins" in kinds

    real = store_numbers.upsert_number_on
    calls: list[str] = []

    def failing(conn: Any, now: datetime, **config: Any) -> tuple[int, bool]:
        calls.append(config["phone"])
        if len(calls) == 3:
            raise database_error()
        return real(conn, now, **config)

    monkeypatch.setattr(fleet_sync, "upsert_number_on", failing)
    with pytest.raises(ApplyFailed) as info:
        apply_changes(engine, changes, now=NOW)
    message = str(info.value)
    assert len(calls) == 3 and "rolled back" in message and "OperationalError" in message
    assert "UPDATE" not in message and "secret" not in message
    assert snapshot(engine) == before
    assert current_admins(engine) == ("+5511988880000",)


def test_a_constraint_violation_of_a_stale_plan_changes_nothing(engine: Engine, fleet_dir: Path) -> None:
    """Another process enrolled a number between plan and apply: the add breaks the unique phone,
    after the updates ran; all of it is rolled back."""
    old, new = old_and_new(fleet_dir, 3)
    apply_changes(engine, plan_changes(engine, load_fleet(old, ENV)), now=NOW)
    changes = plan_changes(engine, load_fleet(new, ENV))
    add_number(
        engine,
        phone="+5521999990002",
        provider="simulator",
        token_ref="TOK_A",
        plan_name="other",
        plan_path="/elsewhere.yaml",
        timezone="UTC",
        base_url="http://127.0.0.1:9",
        now=NOW,
    )
    before = snapshot(engine)
    with pytest.raises(ApplyFailed) as info:
        apply_changes(engine, changes, now=NOW)
    assert "IntegrityError" in str(info.value) and "INSERT" not in str(info.value)
    assert snapshot(engine) == before
    again = plan_changes(engine, load_fleet(new, ENV))  # a fresh plan applies cleanly
    apply_changes(engine, again, now=NOW)
    assert plan_changes(engine, load_fleet(new, ENV)) == []
    assert current_admins(engine) == ()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _inside_apply(engine: Engine) -> bool:
    """Whether another process holds the apply's write transaction open (seen from outside)."""
    if engine.dialect.name == "sqlite":
        raw = sqlite3.connect(str(engine.url.database), timeout=0)
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.rollback()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            raw.close()
    with engine.connect() as conn:
        busy = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    return bool(busy)


def state_of(engine: Engine) -> tuple[Any, ...]:
    numbers = tuple(
        (n.phone, n.timezone, n.pending_timezone, n.state, n.portfolio) for n in list_numbers(engine)
    )
    with engine.connect() as conn:
        audits = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
        portfolios = tuple(conn.execute(sa.text("SELECT name, tier FROM portfolios ORDER BY name")).all())
    return numbers, audits, portfolios, current_admins(engine)


@pytest.mark.slow
def test_kill_9_during_a_1500_number_apply_leaves_the_old_or_the_new_fleet_whole(
    engine: Engine, fleet_dir: Path
) -> None:
    """`warmup apply` killed with SIGKILL while its transaction is open (seen from outside, then after
    a random short delay) leaves exactly the fleet before it; a finished one leaves the whole file's.
    Each attempt applies the other file (1,500 changes either way) until one was killed mid-way."""
    old, new = old_and_new(fleet_dir, 1500)
    apply_changes(engine, plan_changes(engine, load_fleet(old, ENV)), now=NOW)
    env = {**os.environ, **ENV, "WARMUP_CLOCK": ""}
    killed = 0
    target = new
    for attempt in range(4):
        before = state_of(engine)
        command = [sys.executable, "-m", "warmup", "apply", str(target), "--database-url", _url(engine)]
        output = fleet_dir / f"out-{attempt}.txt"  # a file: a full pipe would stall the apply itself
        with output.open("wb") as sink:
            process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        inside = False
        while process.poll() is None and not inside and time.monotonic() < deadline:
            inside = _inside_apply(engine)
            time.sleep(0 if inside else 0.005)
        time.sleep(random.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        out = output.read_bytes()
        if engine.dialect.name == "postgresql":  # the server ends the dead client's transaction
            while _inside_apply(engine) and time.monotonic() < deadline:
                time.sleep(0.01)
        if process.returncode == -signal.SIGKILL and b"applied" not in out:
            assert inside, f"killed before its transaction began: {out.decode()[-2000:]}"
            killed += 1
            assert state_of(engine) == before, f"attempt {attempt}: a killed apply left changes"
            break
        assert process.returncode == 0, out.decode()[-2000:]  # it finished before the kill: all of it
        assert state_of(engine) != before and plan_changes(engine, load_fleet(target, ENV)) == []
        target = old if target == new else new
    assert killed, "every apply finished before the kill: nothing was tested"
    command = [sys.executable, "-m", "warmup", "apply", str(new), "--database-url", _url(engine)]
    done = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    numbers, _, portfolios, admins = state_of(engine)
    assert len(numbers) == 1503 and admins == () and portfolios == (("acme", "TIER_1K"),)
    assert plan_changes(engine, load_fleet(new, ENV)) == []


# ------------------------------------------------------------------------------------------ scale


def big_fleet(fleet_dir: Path, count: int) -> Path:
    return write(fleet_dir, fleet_text([entry(f"+55119{i:08d}") for i in range(count)]))


def test_a_fleet_over_the_old_25000_value_limit_loads(fleet_dir: Path) -> None:
    fleet = load_fleet(big_fleet(fleet_dir, 2500), ENV)  # ~35,000 YAML values
    assert len(fleet.numbers) == 2500 and fleet.numbers[-1].phone == "+5511900002499"


@pytest.mark.slow
def test_a_10000_number_fleet_validates_and_applies(engine: Engine, fleet_dir: Path) -> None:
    path = big_fleet(fleet_dir, 10_000)
    fleet = load_fleet(path, ENV)
    changes = plan_changes(engine, fleet)
    assert len(changes) == 10_001  # 10,000 adds and the admins
    apply_changes(engine, changes, now=NOW)
    assert len(list_numbers(engine)) == 10_000
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one() == 10_001
        assert conn.execute(sa.text("SELECT count(*) FROM paces")).scalar_one() == 10_000
    assert plan_changes(engine, fleet) == []


def test_a_billion_laughs_file_is_still_refused(fleet_dir: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = write(fleet_dir, "\n".join(lines) + "\nnumbers: *a9\n")
    (problem,) = problems_of(path)
    assert "aliases (*a0) are not supported" in problem


def test_a_flat_flood_of_values_is_cut_by_the_file_size(fleet_dir: Path) -> None:
    """Without aliases, the values a fleet file may hold grow with its size only: a file of tiny
    values (two characters each) is refused, long before it is parsed to its end."""
    text = "numbers: [" + "1," * 150_000 + "1]\n"  # 150,001 values in 300,013 bytes
    path = write(fleet_dir, text)
    (problem,) = problems_of(path)
    assert f"more than {len(text) // 5} YAML values; far too many" in problem  # cut at 60,002
