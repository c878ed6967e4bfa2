"""Load a plan file: the YAML into the `Plan` model, every problem at its line, and the message pool and
contact list it names checked too (paths relative to the plan file, resolved for callers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from warmup.core.plan.model import Plan
from warmup.files.content import load_contacts, load_pool
from warmup.files.loader import load_yaml_model, lookup
from warmup.files.problems import Path_, PlanError, Problem, format_field
from warmup.files.source import Document


def load_plan(path: str | Path) -> Plan:
    """Load and fully check a plan file, including the message pool and contacts file it names.

    The returned plan's `content` and `audience.contacts` are absolute paths (they are written relative
    to the plan file), so callers can open them from anywhere.
    """
    base = Path(path).parent
    plan = load_yaml_model(path, Plan, what="plan file", check=lambda doc: _reference_problems(doc, base))
    content = str((base / plan.content).resolve()) if plan.content else None
    contacts = str((base / plan.audience.contacts).resolve()) if plan.audience.contacts else None
    return plan.model_copy(
        update={"content": content, "audience": plan.audience.model_copy(update={"contacts": contacts})}
    )


def _reference_problems(doc: Document, base: Path) -> list[Problem]:
    """Referenced files must exist (relative to the plan) and be valid themselves."""
    loaders: tuple[tuple[Path_, Callable[[Path], object], str], ...] = (
        (("content",), load_pool, "message pool"),
        (("audience", "contacts"), load_contacts, "contacts file"),
    )
    problems: list[Problem] = []
    for where, load, what in loaders:
        ref = lookup(doc.data, where)
        if not isinstance(ref, str) or not ref.strip():
            continue
        target = base / ref
        if not target.is_file():
            problems.append(
                doc.problem(
                    where,
                    format_field(where),
                    f"{what} {str(target)!r} not found (paths are relative to the plan file)",
                )
            )
            continue
        try:
            load(target)
        except PlanError as exc:
            problems += exc.problems
    return problems
