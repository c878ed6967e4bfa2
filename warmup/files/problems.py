"""Located problems in an input file, and the error that carries all of them at once."""

from __future__ import annotations

from dataclasses import dataclass

from warmup.core.errors import UserError

Path_ = tuple[str | int, ...]
"""A position inside a YAML document: mapping keys and sequence indexes from the top."""


def format_field(path: Path_) -> str:
    """``('ramp', 'steps', 1, 'volume')`` -> ``ramp.steps[1].volume``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in one file; line and col are 1-based (0 when the problem is about the whole file)."""

    file: str
    line: int
    col: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PlanError(UserError):
    """An input file (plan, message pool, contacts, fleet file) has problems; `.problems` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(problem) for problem in self.problems))
