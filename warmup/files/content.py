"""What the numbers say: message pools (YAML) and contact lists (CSV) that plans refer to.

A pool file holds everyday chat in one language: ``openers`` start a conversation, ``replies`` answer a
received message, optional ``followups`` continue a conversation the number started. `MessagePool.pick`
is pure (the caller passes the random generator) and avoids repeating the last text a recipient got.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    model_validator,
)

from warmup.core.plan.checks import Issue, validate_with_checks
from warmup.core.plan.values import parse_phone
from warmup.files.loader import load_yaml_model
from warmup.files.problems import PlanError, Problem
from warmup.files.source import read_text

MessageKind = Literal["opener", "reply", "followup"]

MAX_TEXT = 1000
"""Warm-up chat is short; WhatsApp allows 4096 characters, a pool line near that is a mistake."""

MAX_CONTACTS_BYTES = 4 * 1024 * 1024

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)]


def _duplicate_issues(data: Any) -> list[Issue]:
    issues: list[Issue] = []
    for name in ("openers", "replies", "followups"):
        raw = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
        seen: dict[str, int] = {}
        for index, text in enumerate(raw if isinstance(raw, list | tuple) else []):
            if not isinstance(text, str):
                continue
            key = " ".join(text.split()).casefold()
            if key in seen:
                issues.append(((name, index), f"same text as {name}[{seen[key]}]"))
            else:
                seen[key] = index
    return issues


class PoolFile(BaseModel):
    """The YAML format of a message pool file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", description="BCP 47 code: en, pt-BR")
    description: str = ""
    openers: list[Text] = Field(min_length=1, description="first messages to someone")
    replies: list[Text] = Field(min_length=1, description="answers to a received message")
    followups: list[Text] = Field(default_factory=list, description="continue a conversation we started")

    @model_validator(mode="wrap")
    @classmethod
    def _no_duplicates(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _duplicate_issues)


@dataclass(frozen=True)
class MessagePool:
    """The texts a number may send, by kind; `pick` chooses one."""

    language: str
    openers: tuple[str, ...]
    replies: tuple[str, ...]
    followups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.openers or not self.replies:
            raise ValueError("a message pool needs at least one opener and one reply")

    @classmethod
    def from_file_model(cls, pool: PoolFile) -> MessagePool:
        return cls(pool.language, tuple(pool.openers), tuple(pool.replies), tuple(pool.followups))

    def options(self, kind: MessageKind) -> tuple[str, ...]:
        """The texts of one kind; a pool without followups uses its openers for them."""
        if kind == "opener":
            return self.openers
        if kind == "reply":
            return self.replies
        return self.followups or self.openers

    def pick(self, rng: random.Random, kind: MessageKind, avoid: str | None = None) -> str:
        """A random text of `kind`, never `avoid` (the recipient's last text) when another one exists."""
        options = self.options(kind)
        choices = [text for text in options if text != avoid] or list(options)
        return rng.choice(choices)


def load_pool(path: str | Path) -> MessagePool:
    """Load and validate a message pool file; PlanError lists every located problem."""
    return MessagePool.from_file_model(load_yaml_model(path, PoolFile, what="message pool"))


@dataclass(frozen=True)
class Contact:
    """One person a number may write to, from a contacts CSV."""

    phone: str  # E.164
    name: str = ""


def load_contacts(path: str | Path) -> list[Contact]:
    """Read a ``phone,name`` CSV (``#`` lines are comments); PlanError lists every bad line.

    Phones are normalised to E.164; a phone listed twice is an error, since it would double that
    person's messages.
    """
    name = str(path)
    text = read_text(path, max_bytes=MAX_CONTACTS_BYTES, what="contacts file")
    problems: list[Problem] = []
    contacts: list[Contact] = []
    first_line: dict[str, int] = {}
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        row = [cell.strip() for cell in next(csv.reader([line]))]
        if not header_seen:
            header_seen = True
            if [cell.lower() for cell in row] != ["phone", "name"]:
                problems.append(Problem(name, number, 1, "", "the first row must be the header phone,name"))
                break
            continue
        if len(row) > 2:
            problems.append(Problem(name, number, 1, "", f"expected 2 columns (phone,name), got {len(row)}"))
            continue
        phone_text, person = row[0], row[1] if len(row) > 1 else ""
        try:
            phone = parse_phone(phone_text)
        except ValueError as exc:
            problems.append(Problem(name, number, 1, "phone", str(exc)))
            continue
        if len(person) > 100:
            problems.append(
                Problem(name, number, len(line) - len(person) + 1, "name", "longer than 100 characters")
            )
            continue
        if phone in first_line:
            problems.append(
                Problem(name, number, 1, "phone", f"{phone} is already on line {first_line[phone]}")
            )
            continue
        first_line[phone] = number
        contacts.append(Contact(phone, person))
    if not problems and not contacts:
        problems.append(Problem(name, 0, 0, "", "no contacts: add rows of phone,name under the header"))
    if problems:
        raise PlanError(problems)
    return contacts
