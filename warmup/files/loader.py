"""Load hand-written YAML into pydantic models, reporting every problem at its line and column.

`load_yaml_model` is the generic path (plans in `warmup.files.plans`, message pools in
`warmup.files.content`, fleet files in `warmup.services.fleet`): safe parsing (`warmup.files.source`),
one pydantic validation that collects all errors, each error mapped back to the YAML node it is about
and phrased for the person who wrote the file.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from warmup.files.problems import Path_, PlanError, Problem, format_field
from warmup.files.source import MAX_BYTES, MAX_DEPTH, MAX_NODES, Document, read_yaml

__all__ = ["MAX_BYTES", "load_yaml_model", "located_problems", "lookup"]

M = TypeVar("M", bound=BaseModel)

_TYPE_MESSAGES = {
    "model_type": "expected a mapping of keys (key: value)",
    "model_attributes_type": "expected a mapping of keys (key: value)",
    "dict_type": "expected a mapping of keys (key: value)",
    "list_type": "expected a list",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "finite_number": "expected a finite number",
    "string_pattern_mismatch": "not allowed here",
}


def load_yaml_model(
    path: str | Path,
    model_cls: type[M],
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    bytes_per_node: int | None = None,
    what: str = "file",
    check: Callable[[Document], list[Problem]] | None = None,
) -> M:
    """Read `path` as YAML and validate it as `model_cls`; raise PlanError listing every problem.

    `check` adds problems found outside the model (e.g. missing referenced files); it sees the parsed
    document even when validation failed, so those problems are reported in the same run.
    """
    doc = read_yaml(
        path,
        max_bytes=max_bytes,
        max_depth=max_depth,
        max_nodes=max_nodes,
        bytes_per_node=bytes_per_node,
        what=what,
    )
    if doc.data is None:
        raise PlanError([*doc.problems, doc.problem((), "", "no content (only comments or blank lines)")])
    if not isinstance(doc.data, dict):
        message = f"the top level must be a mapping of keys (key: value), got a {_kind(doc.data)}"
        raise PlanError([*doc.problems, doc.problem((), "", message)])
    problems = list(doc.problems)
    model: M | None = None
    try:
        model = model_cls.model_validate(doc.data)
    except ValidationError as exc:
        problems += located_problems(exc, doc, model_cls)
    if check is not None:
        problems += check(doc)
    if problems or model is None:
        raise PlanError(problems)
    return model


def lookup(data: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def located_problems(exc: ValidationError, doc: Document, model_cls: type[BaseModel]) -> list[Problem]:
    """Map each pydantic error to the YAML node it is about, with a message for a person."""
    by_place: dict[tuple[int, int, str], list[tuple[ErrorDetails, str]]] = {}
    for error in exc.errors():
        loc = tuple(error["loc"])
        matched = _matched_path(loc, doc)
        kind = error["type"]
        if kind == "missing":
            missing = loc[-1] if loc and isinstance(loc[-1], str) else ""
            field_path = (*matched, missing) if missing else matched
            line, col = doc.where(matched)
            message = "required, but missing"
        elif kind == "extra_forbidden":
            field_path = matched
            line, col = doc.where(matched, key=True)
            message = _unknown_key(str(loc[-1]), _fields_at(model_cls, loc[:-1]))
        else:
            field_path = matched
            line, col = doc.where(matched)
            message = _message(error)
        by_place.setdefault((line, col, format_field(field_path)), []).append((error, message))
    problems = []
    for (line, col, field_name), entries in by_place.items():
        # A value that fails several members of a union gets one error per member; keep the telling ones.
        telling = [message for error, message in entries if not error["type"].endswith("_type")] or [
            entries[0][1]
        ]
        for message in dict.fromkeys(telling):
            problems.append(Problem(doc.file, line, col, field_name, message))
    return problems


def _matched_path(loc: tuple[str | int, ...], doc: Document) -> Path_:
    """The longest prefix of `loc` present in the document, skipping pydantic's union/validator tags."""
    path: Path_ = ()
    for part in loc:
        if (*path, part) in doc.values:
            path = (*path, part)
    return path


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    if known:
        return f"unknown key {key!r} (allowed here: {', '.join(known)})"
    return f"unknown key {key!r}"


def _fields_at(model_cls: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model that validates the mapping at `loc`, to suggest a near miss."""
    current: Any = model_cls
    for part in loc:
        current = _step_into(current, part)
        if current is None:
            return []
    models = _models_in(current)
    return list(models[0].model_fields) if models else []


def _members(tp: Any) -> list[Any]:
    if get_origin(tp) is Annotated:
        return _members(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return [member for arg in get_args(tp) for member in _members(arg)]
    return [tp]


def _models_in(tp: Any) -> list[type[BaseModel]]:
    return [m for m in _members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]


def _step_into(tp: Any, part: str | int) -> Any:
    for member in _members(tp):
        if isinstance(part, int) and get_origin(member) in (list, tuple):
            return get_args(member)[0]
        is_model = isinstance(member, type) and issubclass(member, BaseModel)
        if isinstance(part, str) and is_model and part in member.model_fields:
            return member.model_fields[part].annotation
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "true/false value"
    if isinstance(value, int | float):
        return "number"
    return "text value"


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"a {_kind(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: ErrorDetails) -> str:
    kind, message, value = error["type"], error["msg"], error["input"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'|(\d+)", str(error.get("ctx", {}).get("expected", "")))
        options = [quoted or number for quoted, number in expected]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close and close[0] != str(value) else ""
        return f"expected {' or '.join(options)}, got {_shown(value)}{hint}"
    if kind == "string_pattern_mismatch":
        return f"{_shown(value)} is not allowed: use letters, digits, '-', '_' or '.' (no spaces)"
    base = _TYPE_MESSAGES.get(kind, message)
    return f"{base}, got {_shown(value)}"
