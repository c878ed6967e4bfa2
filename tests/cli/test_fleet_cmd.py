"""`warmup apply` at the terminal (issue 14 item 4): `--dry-run` refuses what the database would, and
a failed apply prints one line, never SQL or its parameters, and leaves the store as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, ProgrammingError
from typer.testing import CliRunner

from tests.fleet_fixture import write_plan
from warmup.cli.main import _register, app
from warmup.services import fleet as fleet_service
from warmup.services.fleet import ApplyFailed
from warmup.store import fleet_sync
from warmup.store import numbers as store_numbers
from warmup.store.numbers import list_numbers

_register()
runner = CliRunner()

NUMBER = """\
  - phone: "{phone}"
    provider: whapi
    base_url: {base_url}
    token: ${{CLI_FLEET_TOKEN}}
    plan: plans/plan.yaml
    timezone: America/Sao_Paulo
"""


def fleet_text(base_urls: list[str], admins: str = '["+5511988880000"]') -> str:
    body = "".join(
        NUMBER.format(phone=f"+551199999000{i + 1}", base_url=url) for i, url in enumerate(base_urls)
    )
    return f"numbers:\n{body}admins: {admins}\n"


@pytest.fixture
def setup(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    write_plan(tmp_path / "plans")
    monkeypatch.setenv("CLI_FLEET_TOKEN", "cli-fleet-token-value")
    monkeypatch.setenv("WARMUP_CLOCK", "")
    return engine.url.render_as_string(hide_password=False), tmp_path / "fleet.yaml"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        audits = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
    return len(list_numbers(engine)), audits


def test_dry_run_refuses_a_base_url_the_database_would_refuse(
    engine: Engine, setup: tuple[str, Path]
) -> None:
    """The red team's file: the third number's base_url is over 255 characters."""
    url, fleet = setup
    long_url = "http://127.0.0.1:1/" + "p" * 300
    fleet.write_text(fleet_text(["http://127.0.0.1:1", "http://127.0.0.1:1", long_url]))
    for extra in (["--dry-run"], []):
        code, out = run("apply", str(fleet), *extra, "--database-url", url)
        assert code == 1, out
        assert f"{fleet}:16:15:" in out and "numbers[2].base_url: at most 255 characters, got 319" in out
        assert "nothing applied (1 problem(s))" in out and "p" * 100 not in out
    assert rows(engine) == (0, 0)


def test_a_database_failure_prints_one_line_without_sql_and_changes_nothing(
    engine: Engine, setup: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, fleet = setup
    fleet.write_text(fleet_text(["http://127.0.0.1:1"] * 2))
    assert run("apply", str(fleet), "--database-url", url)[0] == 0
    before = rows(engine)
    fleet.write_text(fleet_text(["http://127.0.0.1:2"] * 3, admins="[]"))
    calls: list[str] = []
    real = store_numbers.upsert_number_on

    def failing(conn: Any, now: Any, **config: Any) -> tuple[int, bool]:
        calls.append(config["phone"])
        if len(calls) == 2:
            raise DataError(
                "UPDATE numbers SET base_url=%(base_url)s WHERE numbers.id = %(id_1)s",
                {"base_url": "http://127.0.0.1:2", "id_1": 2},
                Exception(
                    "value too long for type character varying(255)\nDETAIL: the value http://127.0.0.1:2"
                ),
            )
        return real(conn, now, **config)

    monkeypatch.setattr(fleet_sync, "upsert_number_on", failing)
    with pytest.raises(ApplyFailed) as info:  # `warmup.cli.main` prints it as one `error:` line, exit 1
        run("apply", str(fleet), "--database-url", url)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 1
    assert "DataError: value too long for type character varying(255)" in message and "rolled back" in message
    for leak in ("UPDATE", "%(", "id_1", "DETAIL", "127.0.0.1:2"):
        assert leak not in message
    assert rows(engine) == before
    assert {n.base_url for n in list_numbers(engine)} == {"http://127.0.0.1:1"}


def test_an_unexpected_error_is_one_line_and_exit_2(
    engine: Engine, setup: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, fleet = setup
    fleet.write_text(fleet_text(["http://127.0.0.1:1"]))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ProgrammingError("SELECT numbers.token_ref FROM numbers", {"p": "x"}, Exception("syntax"))

    monkeypatch.setattr(fleet_service, "plan_changes", broken)
    code, out = run("apply", str(fleet), "--database-url", url)
    assert code == 2
    assert out.strip().splitlines() == [
        f"error: {fleet}: apply failed with an internal error (ProgrammingError); nothing was applied "
        "(its transaction was rolled back)"
    ]
    assert rows(engine) == (0, 0)
