"""Load a plan file: the YAML into the `Plan` model, every problem at its line, and the message pool and
contact list it names checked too (paths relative to the plan file, resolved for callers).

The files a plan names must lie inside the plan's own folder (after following symlinks): a plan is
data someone may hand over, and validation quotes lines of the files it reads, so a plan naming
`/etc/shadow` or `../../secrets.yaml` must not get them read. An operator who keeps pools or contacts
elsewhere allows that folder explicitly with the environment variable `WARMUP_PLAN_ROOT`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from warmup.core.plan.model import Plan
from warmup.files.content import load_contacts, load_pool
from warmup.files.loader import load_yaml_model, lookup
from warmup.files.problems import Path_, PlanError, Problem, format_field
from warmup.files.source import Document

ENV_PLAN_ROOT = "WARMUP_PLAN_ROOT"


def allowed_roots(plan_dir: Path, env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The folders a plan's files may be in: the plan's own, and `WARMUP_PLAN_ROOT` when set."""
    roots = [plan_dir.resolve()]
    extra = (os.environ if env is None else env).get(ENV_PLAN_ROOT, "").strip()
    if extra:
        roots.append(Path(extra).expanduser().resolve())
    return tuple(roots)


def inside(target: Path, roots: tuple[Path, ...]) -> bool:
    """Whether `target`, symlinks followed, is in one of `roots` (which are resolved already)."""
    real = target.resolve()
    return any(real.is_relative_to(root) for root in roots)


def load_plan(path: str | Path) -> Plan:
    """Load and fully check a plan file, including the message pool and contacts file it names.

    The returned plan's `content` and `audience.contacts` are absolute paths (they are written relative
    to the plan file), so callers can open them from anywhere.
    """
    base = Path(path).parent
    roots = allowed_roots(base)
    plan = load_yaml_model(
        path, Plan, what="plan file", check=lambda doc: _reference_problems(doc, base, roots)
    )
    content = str((base / plan.content).resolve()) if plan.content else None
    contacts = str((base / plan.audience.contacts).resolve()) if plan.audience.contacts else None
    return plan.model_copy(
        update={"content": content, "audience": plan.audience.model_copy(update={"contacts": contacts})}
    )


def _reference_problems(doc: Document, base: Path, roots: tuple[Path, ...]) -> list[Problem]:
    """Referenced files must be inside the allowed folders (checked before anything is read), exist
    (relative to the plan) and be valid themselves."""
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
        if not inside(target, roots):
            allowed = f"the plan's folder {str(roots[0])!r}" + (
                f" or {ENV_PLAN_ROOT} {str(roots[1])!r}" if len(roots) > 1 else ""
            )
            message = (
                f"{what} {ref!r} is outside {allowed} (symlinks followed): keep it there, "
                f"or allow its folder with the environment variable {ENV_PLAN_ROOT}"
            )
            problems.append(doc.problem(where, format_field(where), message))
            continue
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
