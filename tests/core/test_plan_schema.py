"""The exported JSON Schema is a valid draft 2020-12 schema that the example plans satisfy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from tests.paths import PLANS
from warmup.core.plan.schema import DRAFT, plan_json_schema

EXAMPLES = sorted(PLANS.glob("*.yaml"))


def validator() -> Draft202012Validator:
    schema = plan_json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_schema_is_draft_2020_12() -> None:
    schema = plan_json_schema()
    assert schema["$schema"] == DRAFT
    Draft202012Validator.check_schema(schema)
    assert set(schema["required"]) == {"name", "schedule", "ramp", "pacing"}


def test_defaults_read_like_a_plan() -> None:
    defs = plan_json_schema()["$defs"]
    assert defs["Pacing"]["properties"]["typing"]["default"] == "2s..8s"
    assert defs["Risk"]["properties"]["stale_after"]["default"] == "1d12h"
    assert defs["Schedule"]["properties"]["rest_days"]["default"] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_plans_satisfy_the_schema(path: Path) -> None:
    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(data)]
    assert errors == []


def test_example_plans_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= {"cautious-new", "standard-21d", "fast-aged"}


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"pacing": {"gap": "1m", "max_per_hour": "many"}}, "pacing/max_per_hour"),
        ({"colour": "blue"}, ""),
        ({"risk": {"rules": [{"when": {"overall": 1}, "do": {"throttle": 2}}]}}, "risk/rules/0/do"),
        ({"ramp": {"steps": [{"days": 1, "volume": -3}]}}, "ramp/steps/0/volume"),
    ],
)
def test_schema_rejects_wrong_shapes(patch: dict[str, object], path: str) -> None:
    data = YAML(typ="safe", pure=True).load((PLANS / "standard-21d.yaml").read_text(encoding="utf-8"))
    data.update(patch)
    errors = list(validator().iter_errors(data))
    assert errors
    assert path in {"/".join(map(str, e.absolute_path)) for e in errors}


def test_shipped_schema_file_is_current() -> None:
    shipped = json.loads((PLANS / "plan.schema.json").read_text(encoding="utf-8"))
    assert shipped == plan_json_schema(), "regenerate: warmup plan schema > plans/plan.schema.json"
