"""Cross-field checks that run even when other fields are invalid, each problem reported at the field it
is about, so one `warmup plan validate` run shows every mistake in a file (`validate_with_checks`).

Used by the plan models (`warmup.core.plan.model`) and the message pool file (`warmup.files.content`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ModelWrapValidatorHandler,
    ValidationError,
)
from pydantic_core import InitErrorDetails

from warmup.core.plan.values import (
    format_weekdays,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

Loc = tuple[str | int, ...]
Issue = tuple[Loc, str]
"""A problem found by a cross-field check: where (relative to the model checked) and what."""


def _error_details(exc: ValidationError) -> list[InitErrorDetails]:
    """Turn a caught ValidationError back into raisable details (to merge with more errors)."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        detail = InitErrorDetails(type=error["type"], loc=error["loc"], input=error["input"])
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        try:
            ValidationError.from_exception_data("probe", [detail])
        except (KeyError, TypeError, ValueError):  # an error type pydantic cannot rebuild: keep its text
            detail = InitErrorDetails(
                type="value_error",
                loc=error["loc"],
                input=error["input"],
                ctx={"error": ValueError(error["msg"])},
            )
        details.append(detail)
    return details


def validate_with_checks(
    model: type[M], data: Any, handler: ModelWrapValidatorHandler[M], check: Callable[[Any], list[Issue]]
) -> M:
    """Validate with pydantic, then run the cross-field `check` even if some fields failed; raise all.

    Use it from a ``model_validator(mode="wrap")``. `check` sees the built model when validation passed,
    else the raw input (read it leniently), and returns (location relative to the model, message) pairs.
    """
    result: M | None = None
    errors: list[InitErrorDetails] = []
    try:
        result = handler(data)
    except ValidationError as exc:
        errors = _error_details(exc)
    issues = check(result if result is not None else data)
    if not issues:
        if result is None:
            raise ValidationError.from_exception_data(model.__name__, errors)
        return result
    errors += [
        InitErrorDetails(type="value_error", loc=loc, input=data, ctx={"error": ValueError(message)})
        for loc, message in issues
    ]
    raise ValidationError.from_exception_data(model.__name__, errors)


def field_of(item: Any, name: str) -> Any:
    """A field of a raw mapping or of an already-built model (checks see either)."""
    if isinstance(item, BaseModel):
        return getattr(item, name, None)
    if isinstance(item, dict):
        return item.get(name)
    return None


def lenient(parse: Callable[[Any], T], raw: Any) -> T | None:
    """Parse a raw value for a cross-field check; None when it is invalid (its own error says why)."""
    if raw is None:
        return None
    try:
        return parse(raw)
    except (ValueError, TypeError):
        return None


def items_of(raw: Any) -> Sequence[Any]:
    return raw if isinstance(raw, list | tuple) else []


def days_text(days: frozenset[int]) -> str:
    text = format_weekdays(days)
    return text if isinstance(text, str) else "no day"
