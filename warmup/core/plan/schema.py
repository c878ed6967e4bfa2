"""The plan language as a JSON Schema (draft 2020-12), generated from the pydantic models.

Editors use it for completion and inline errors (a `# yaml-language-server: $schema=...` comment in the
plan file); it describes shapes only, the loader's checks (overlapping steps, missing files) go further.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from warmup.core.plan.model import Plan
from warmup.core.plan.values import DurationRange, format_duration, format_weekdays

DRAFT = "https://json-schema.org/draft/2020-12/schema"


class _PlanSchemaGenerator(GenerateJsonSchema):
    """Writes defaults the way a plan author writes them (``2s..8s``, ``36h``), not as ISO 8601."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, DurationRange):
            return str(dft)
        if isinstance(dft, timedelta):
            return format_duration(dft)
        if isinstance(dft, frozenset) and all(isinstance(day, int) for day in dft):
            return format_weekdays(dft)
        return super().encode_default(dft)


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of a plan file."""
    schema = Plan.model_json_schema(schema_generator=_PlanSchemaGenerator)
    return {
        "$schema": DRAFT,
        "title": "warmup plan",
        "description": "A warm-up ramp plan for WhatsApp numbers (warmup plan validate checks more).",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }
