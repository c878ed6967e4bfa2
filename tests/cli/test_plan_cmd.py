"""`warmup plan validate` and `warmup plan schema`, run as a user runs them (a real process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jsonschema import Draft202012Validator

from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
PLANS = sorted((ROOT / "plans").glob("*.yaml"))


def warmup(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "warmup", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_validate_example_plans() -> None:
    result = warmup("plan", "validate", *(str(p.relative_to(ROOT)) for p in PLANS))
    assert result.returncode == 0, result.stderr
    assert "OK plans/standard-21d.yaml (standard-21d, 21 days)" in result.stdout.splitlines()
    assert len(result.stdout.splitlines()) == len(PLANS)


def test_validate_reports_every_problem_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad plan\n"
        "schedule:\n"
        "  windows: [{days: mon-fri, hours: '09:00-12:00'}]\n"
        "ramp:\n"
        "  steps: [{days: 1-3, volume: 5}]\n"
        "pacing: {gap: 1m, max_per_hour: 30, max_per_day: 9}\n"
    )
    result = warmup("plan", "validate", str(bad), "plans/standard-21d.yaml")
    assert result.returncode == 1
    assert "OK plans/standard-21d.yaml" in result.stdout
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"{bad}:1:7: name: 'bad plan' is not allowed")
    assert errors[1].startswith(f"{bad}:6:37: pacing.max_per_day: unknown key 'max_per_day'")
    assert errors[-1] == "1 of 2 plan files with problems"


def test_validate_missing_file_is_a_clear_error() -> None:
    result = warmup("plan", "validate", "plans/no-such-plan.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "plans/no-such-plan.yaml: no such plan file"


def test_validate_without_files_is_a_usage_error() -> None:
    result = warmup("plan", "validate")
    assert result.returncode == 2
    assert "Missing argument 'PLAN'" in result.stderr and "Traceback" not in result.stderr


def test_schema_prints_a_valid_json_schema() -> None:
    result = warmup("plan", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_validate_refuses_a_text_the_store_cannot_hold_at_its_line(tmp_path: Path) -> None:
    """Issue 14: a pool text with a NUL (YAML escape) passed validation, then failed the planning of
    every number in its batch on PostgreSQL. It is refused at its line, the character named."""
    plan = (ROOT / "plans" / "standard-21d.yaml").read_text()
    (tmp_path / "messages").mkdir()
    (tmp_path / "contacts").mkdir()
    (tmp_path / "contacts" / "friendly.csv").write_text("phone,name\n+12025550101,Ana\n")
    pool = tmp_path / "messages" / "casual-en.yaml"
    pool.write_text(
        "language: en\n"
        "openers:\n"
        "  - Hi there\n"
        '  - "ok \\u0000 nul"\n'  # 4
        "replies: [Sure]\n"
        "templates:\n"
        "  - {name: hello, language: en_US, parameters: ['fine', \"two\\nlines\"]}\n"  # 7
    )
    (tmp_path / "plan.yaml").write_text(plan)
    result = warmup("plan", "validate", str(tmp_path / "plan.yaml"))
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert (
        f"{pool}:4:5: openers[1]: this text contains a NUL character (U+0000) at position 4: the database "
        "cannot store it"
    ) in errors, errors
    assert any(
        line.startswith(f"{pool}:7:") and "a template parameter contains a line break (U+000A)" in line
        for line in errors
    ), errors
