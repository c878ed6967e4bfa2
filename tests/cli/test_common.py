"""What every command shares, checked through the real entry point: bad settings, bad database URLs and
missing files are one clear line on stderr (never a traceback), exit code 1, and nothing is created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.exc

from tests.paths import REPO_ROOT
from warmup.cli import common
from warmup.cli import main as cli_main
from warmup.core.errors import UserError

ROOT = REPO_ROOT


def warmup(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`python -m warmup ARGS` with a clean WARMUP_* environment plus `env`, output captured (a pipe)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WARMUP_") and k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "warmup", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 1, no traceback, and the first stderr line holds every fragment; returns that line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    first = result.stderr.strip().splitlines()[0]
    for fragment in fragments:
        assert fragment in first, (fragment, result.stderr)
    return first


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_bad_settings_are_one_line_naming_the_variable() -> None:
    result = warmup("doctor", env={"WARMUP_LOG_FORMAT": "xml"})
    assert_clean_error(result, "WARMUP_LOG_FORMAT='xml'", "console or json")
    result = warmup("run", env={"WARMUP_LOG_LEVEL": "LOUD"})
    assert_clean_error(result, "WARMUP_LOG_LEVEL='LOUD'", "INFO")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo", "is not a database URL"),
        ("redis://127.0.0.1/0", "unsupported database redis://"),
        ("mysql://someone:pw-do-not-show@db/x", "SQLite or PostgreSQL"),
    ],
)
def test_unsupported_database_urls_are_refused_before_connecting(url: str, message: str) -> None:
    for command in (["status"], ["db", "upgrade"], ["run"]):
        result = warmup(*command, env={"WARMUP_DATABASE_URL": url})
        line = assert_clean_error(result, message)
        assert "pw-do-not-show" not in result.stderr + result.stdout, line


def test_reading_commands_never_create_a_database_file(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    env = {"WARMUP_DATABASE_URL": f"sqlite:///{db}"}
    assert_clean_error(warmup("status", env=env), f"no database at {db}", "warmup db upgrade")
    assert_clean_error(warmup("why", "+5511999990001", env=env), "no database at")
    current = warmup("db", "current", env=env)
    assert current.returncode == 0 and "behind" in current.stdout and "db upgrade" in current.stdout
    doctor = warmup("doctor", env=env)
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    assert "no database file" in doctor.stdout
    assert not db.exists()


def test_db_upgrade_into_a_missing_directory_says_so(tmp_path: Path) -> None:
    result = warmup("db", "upgrade", "--database-url", f"sqlite:///{tmp_path}/nope/x.db")
    assert_clean_error(result, "the directory", "does not exist")


def test_an_error_stays_on_one_line_in_a_pipe(tmp_path: Path) -> None:
    # rich wraps at 80 columns when not a terminal; an error is one copy-pasteable line instead
    result = warmup("status", "--database-url", f"sqlite:///{tmp_path}/{'a-long-name' * 6}.db")
    line = assert_clean_error(result, "warmup db upgrade")
    assert len(line) > 80 and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["webhook", "metrics"])
def test_a_busy_port_is_a_clear_error(command: str, busy_port: int, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    assert warmup("db", "upgrade", "--database-url", url).returncode == 0
    env = {"WARMUP_WEBHOOK_SECRET": "a-webhook-secret-value"}
    result = warmup(command, "--port", str(busy_port), "--database-url", url, env=env)
    assert_clean_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "--port")
    assert "listening" not in result.stdout and "serving" not in result.stdout


def test_simulator_channels_file_problems(tmp_path: Path) -> None:
    assert_clean_error(warmup("simulator", "--channels", str(tmp_path / "none.yaml")), "no such file")
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        '- {token: "${SIM_TOKEN_NOT_SET}", phone: "+5511999990001", registered: 2026-11-01}\n'
    )
    result = warmup("simulator", "--port", "0", "--channels", str(channels))
    assert_clean_error(result, f"{channels}: channels[0].token", "SIM_TOKEN_NOT_SET is not set")


def test_run_refuses_a_bad_clock_before_starting(tmp_path: Path) -> None:
    result = warmup("run", "--database-url", f"sqlite:///{tmp_path}/w.db", env={"WARMUP_CLOCK": "fast"})
    assert_clean_error(result, "WARMUP_CLOCK='fast'")
    assert "warmup running" not in result.stdout


def test_wait_for_redis_gives_up_with_a_hint() -> None:
    from warmup.cli.run_cmd import _wait_for_redis

    with pytest.raises(UserError, match=r"does not answer after 0\.3 s: start it"):
        _wait_for_redis("redis://:hunter2-pass@127.0.0.1:1/0", 0.3)
    try:
        _wait_for_redis("redis://:hunter2-pass@127.0.0.1:1/0", 0)
    except UserError as exc:
        assert "hunter2-pass" not in str(exc) and "***" in str(exc)


def test_settings_and_database_url_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMUP_DATABASE_URL", "sqlite:///from-env.db")
    assert common.database_url(None) == "sqlite:///from-env.db"
    assert common.database_url("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(UserError, match="unsupported database"):
        common.database_url("oracle://u@h/db")
    monkeypatch.setenv("WARMUP_LOG_LEVEL", "chatty")
    with pytest.raises(UserError, match="WARMUP_LOG_LEVEL"):
        common.settings()


def test_tables_are_100_columns_wide_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert common.console().width == common.NON_TTY_WIDTH
    monkeypatch.setenv("COLUMNS", "132")
    assert common.console().width == 132


def test_writable_file(tmp_path: Path) -> None:
    common.writable_file(tmp_path / "chart.png", "the chart")
    with pytest.raises(UserError, match="does not exist"):
        common.writable_file(tmp_path / "no" / "chart.png", "the chart")
    with pytest.raises(UserError, match="is a directory"):
        common.writable_file(tmp_path, "the chart")


def test_an_unexpected_database_error_never_prints_its_sql_or_parameters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLAlchemy's text of a database error carries the statement and its parameters (a user's data,
    maybe a secret): the one line of an internal error keeps only the driver's first line."""
    driver = Exception("value too long for type character varying(255)\nDETAIL: secret-parameter")
    error = sqlalchemy.exc.DataError("UPDATE numbers SET base_url=%(b)s", {"b": "secret-parameter"}, driver)

    def broken(standalone_mode: bool) -> None:
        raise error

    monkeypatch.setattr(cli_main, "app", broken)
    monkeypatch.setattr(cli_main, "_register", lambda: None)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "value too long for type character varying(255)" in err
    assert "secret-parameter" not in err and "UPDATE" not in err and "DETAIL" not in err
