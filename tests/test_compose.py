"""docker-compose.yml and the Dockerfile wire real commands, and keep secrets out.

This machine has no Docker engine or compose plugin (CI runs `docker compose config` only where one
exists), so these tests check what can be checked without one: every service's command is a command
this project really has, the worker module imports as dramatiq would import it, the migration step runs
before the services that need the schema, and no token or password other than the local development one
is written into the file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.paths import REPO_ROOT
from warmup.store.db import upgrade

ROOT = REPO_ROOT


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    return data


def _warmup_help(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warmup", *args, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_has_the_fleet_roles() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "scheduler", "worker", "simulator"} <= set(services)
    assert services["scheduler"]["deploy"]["replicas"] >= 2, "two schedulers: one leads, one stands by"


@pytest.mark.parametrize("service", ["migrate", "scheduler", "simulator"])
def test_warmup_commands_in_compose_exist(service: str) -> None:
    command = _compose()["services"][service]["command"]
    assert command[0] == "warmup"
    words = [word for word in command[1:] if not word.startswith("-")]
    subcommand = words[:2] if words[:1] == ["db"] else words[:1]
    result = _warmup_help(*subcommand)
    assert result.returncode == 0, result.stderr
    for option in (word for word in command[1:] if word.startswith("--")):
        assert option in result.stdout, f"{service}: `warmup {' '.join(subcommand)}` has no {option}"


def test_worker_command_imports_the_actors_module(tmp_path: Path) -> None:
    command = _compose()["services"]["worker"]["command"]
    assert command[:2] == ["dramatiq", "workers.actors"]
    database = f"sqlite:///{tmp_path / 'warmup.db'}"
    upgrade(database)  # compose starts workers after `migrate`: a worker refuses an unmigrated database
    env = {
        "WARMUP_REDIS_URL": "redis://127.0.0.1:6379/15",
        "WARMUP_DATABASE_URL": database,
        "PATH": "/usr/bin:/bin",
    }
    probe = "import workers.actors as a; print(a.send_message.actor_name)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "send_message"


def test_services_wait_for_the_migration() -> None:
    services = _compose()["services"]
    for name in ("scheduler", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_no_secret_is_written_into_compose() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    # The only credential is the throwaway local PostgreSQL password; tokens come from .env.
    assert "TOKEN" not in text.replace("WHAPI_TOKEN_*", "")
    assert "Bearer" not in text


def test_dockerfile_installs_the_project_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    assert "USER warmup" in dockerfile
