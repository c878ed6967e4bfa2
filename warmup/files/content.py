"""What the numbers say: message pools (YAML) and contact lists (CSV) that plans refer to.

A pool file holds everyday chat in one language: ``openers`` start a conversation, ``replies`` answer a
received message, optional ``followups`` continue a conversation the number started, optional
``templates`` name approved WhatsApp templates: over Meta's Cloud API free-form text reaches a person only
inside the 24 h customer-service window (they wrote to the number in the last 24 h); outside it a
message goes out as one of these templates, or not at all. An entry is a text,
or a mapping of the text and a ``when`` condition on the sending number's local time at which the
message is scheduled (``weekdays``, ``hours``); texts may hold ``{first_name}`` and ``{weekday}``.

`MessagePool.choose` is pure (the caller passes the random generator, the local time and what the
recipient got lately): it draws among the texts whose condition holds and that the recipient has not
got within `NO_REPEAT`, else takes the one they got longest ago.
"""

from __future__ import annotations

import bisect
import csv
import difflib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    model_validator,
)

from warmup.core.plan.checks import Issue, field_of, items_of, validate_with_checks
from warmup.core.plan.fields import FreeText, Weekdays, storable
from warmup.core.plan.values import check_text, parse_hours, parse_phone
from warmup.files.loader import load_yaml_model
from warmup.files.problems import PlanError, Problem
from warmup.files.source import read_text

MessageKind = Literal["opener", "reply", "followup"]
KINDS: tuple[MessageKind, ...] = ("opener", "reply", "followup")

MAX_TEXT = 1000
"""Warm-up chat is short; WhatsApp allows 4096 characters, a pool line near that is a mistake."""

MAX_CONTACTS_BYTES = 4 * 1024 * 1024

NO_REPEAT = timedelta(days=7)
"""A recipient does not get the same text twice within this time (unless every text was sent to them)."""

VARIABLES: tuple[str, ...] = ("first_name", "weekday")
"""What a text may hold between braces: the recipient's first name, the local weekday's name."""

WEEKDAY_NAMES: Mapping[str, tuple[str, ...]] = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "pt": (
        "segunda-feira",
        "terça-feira",
        "quarta-feira",
        "quinta-feira",
        "sexta-feira",
        "sábado",
        "domingo",
    ),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "it": ("lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"),
}
"""``{weekday}`` in the pool's language (its primary subtag: ``pt-BR`` is ``pt``), English otherwise."""

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""Where a CSV line ends (`str.splitlines` also splits at U+0085 and U+2028, which a name may hold
and `check_text` refuses or keeps: the line numbers would no longer be the editor's)."""
_BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_LEAD = re.compile(r"^[\s,.;:!?]+")
_WEEK = 7 * 1440
_DRAWS = 8
"""Random draws tried before every text is listed: with a large pool and a week of history the first
draw almost always fits, and listing renders every text of the pool."""


def parse_template(text: str) -> tuple[str, ...]:
    """Split a text into literal parts (even indexes) and variable names (odd indexes).

    ``{{`` and ``}}`` are literal braces; any other brace must open or close a known variable, so a
    typo (``{frist_name}``) or a stray brace is an error for the person who wrote the pool.
    """
    parts: list[str] = []
    literal: list[str] = []
    position = 0
    for match in _BRACES.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        name = match.group(1)
        if name is None:
            raise ValueError(f"a lone {token!r}; write {token * 2} for a literal brace")
        if name.strip() not in VARIABLES:
            close = difflib.get_close_matches(name.strip(), VARIABLES, n=1, cutoff=0.6)
            hint = f"; did you mean {{{close[0]}}}?" if close else ""
            known = " ".join(f"{{{v}}}" for v in VARIABLES)
            raise ValueError(
                f"unknown variable {{{name}}}{hint} (known: {known}; write {{{{ for a literal brace)"
            )
        parts += ["".join(literal), name.strip()]
        literal = []
    literal.append(text[position:])
    return (*parts, "".join(literal))


def first_name_of(name: str) -> str | None:
    """The first name in a contact's name: ``Ana Souza`` and ``Souza, Ana`` give ``Ana``; None if empty."""
    given = name.split(",", 1)[1] if "," in name else name
    words = given.split() or name.replace(",", " ").split()
    return words[0] if words else None


def weekday_name(language: str, weekday: int) -> str:
    """The name of ``weekday`` (0 is Monday) in ``language``, English when the language is not known."""
    names = WEEKDAY_NAMES.get(language.split("-")[0].lower(), WEEKDAY_NAMES["en"])
    return names[weekday]


def _hour_spans(value: object) -> tuple[tuple[int, int], ...]:
    """``05:00-12:00``, a range past midnight (``22:00-02:00``) or a list of them, as minute spans."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError("expected hours like 05:00-12:00 (or a list of them), got an empty list")
    spans: list[tuple[int, int]] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected hours like 05:00-12:00, got {item!r}")
        try:
            spans.append(parse_hours(item))
        except ValueError as exc:
            if "ends before it starts" not in str(exc):
                raise
            start, _, end = item.partition("-")  # past midnight: the late part of the day, the early one
            late = parse_hours(f"{start.strip()}-24:00")
            end_minute = parse_hours(f"{end.strip()}-24:00")[0]  # 0 when it ends at midnight
            if end_minute == late[0]:
                raise ValueError(f"hours {item!r} start and end at the same time") from None
            spans += [late, (0, end_minute)] if end_minute else [late]
    return tuple(spans)


@dataclass(frozen=True)
class When:
    """A condition on the local time a message is scheduled at: one of ``weekdays`` (0 is Monday) and
    within one of the ``hours`` spans (minutes after local midnight); None means any."""

    weekdays: frozenset[int] | None = None
    hours: tuple[tuple[int, int], ...] | None = None

    def holds_at(self, week_minute: int) -> bool:
        """Whether it holds at that minute of the local week (0 is Monday 00:00)."""
        day, minute = divmod(week_minute, 1440)
        if self.weekdays is not None and day not in self.weekdays:
            return False
        return self.hours is None or any(start <= minute < end for start, end in self.hours)

    def holds(self, local: datetime) -> bool:
        """Whether it holds at ``local``, a time in the number's own time zone."""
        return self.holds_at(_week_minute(local))

    def edges(self) -> set[int]:
        """The minutes of the week at which this condition may start or stop holding."""
        days = sorted(self.weekdays) if self.weekdays is not None else range(7)
        spans = self.hours or ((0, 1440),)
        return {(day * 1440 + edge) % _WEEK for day in days for span in spans for edge in span}


def _week_minute(local: datetime) -> int:
    return local.weekday() * 1440 + local.hour * 60 + local.minute


@dataclass(frozen=True)
class Entry:
    """One pool text as written (with its variables) and the condition under which it may be sent."""

    text: str
    when: When | None = None
    parts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    plain: str | None = field(init=False, repr=False, compare=False)  # the text when it has no variables

    def __post_init__(self) -> None:
        parts = parse_template(self.text)
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "plain", parts[0].strip() if len(parts) == 1 else None)

    @property
    def timeless(self) -> bool:
        """Sendable without knowing the time: no condition, no ``{weekday}``."""
        return self.when is None and "weekday" not in self.parts[1::2]

    def render(self, first_name: str | None = None, weekday: str = "") -> str:
        """The text to send. Without a name, ``{first_name}`` goes with the commas and spaces before it
        (``Hey {first_name}, how are you?`` -> ``Hey, how are you?``), and at the start of the text with
        the punctuation after it (``{first_name}! Long time`` -> ``Long time``); the first word of the
        text is capitalised when a variable starts it (``¡{weekday} por fin!`` -> ``¡Viernes por fin!``)."""
        if self.plain is not None:
            return self.plain
        out = self.parts[0]
        for index in range(1, len(self.parts), 2):
            name, literal = self.parts[index], self.parts[index + 1]
            value = first_name if name == "first_name" else weekday
            if value:
                out += _capitalised(value) if _wordless(out) else value
            else:
                out = out.rstrip(" ,")
                if _wordless(out):
                    literal = _capitalised(_LEAD.sub("", literal))
            out += literal
        return out.strip()


def _wordless(text: str) -> bool:
    return not any(char.isalnum() for char in text)


def _capitalised(text: str) -> str:
    """``text`` with its first letter in upper case (after any ``¿`` or ``¡``)."""
    for index, char in enumerate(text):
        if char.isalpha():
            return text[:index] + char.upper() + text[index + 1 :]
    return text


def _check_template(text: str) -> str:
    parse_template(text)
    return text


def _one_line(text: str) -> str:
    return check_text(text, allow="", what="a template parameter")


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT), storable()]
"""A message text: one the database can store and a provider can send (`check_text`), at most
`MAX_TEXT` characters."""
TemplateText = Annotated[Text, AfterValidator(_check_template)]
HourSpans = Annotated[
    tuple[tuple[int, int], ...],
    BeforeValidator(_hour_spans),
    Field(json_schema_extra={"examples": ["05:00-12:00", ["06:00-09:00", "17:00-20:00"]]}),
]


class WhenFile(BaseModel):
    """The YAML of an entry's condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekdays: Weekdays | None = Field(default=None, description="local weekdays: mon, sat-sun, mon-fri")
    hours: HourSpans | None = Field(default=None, description="local hours: 05:00-12:00, or a list")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.weekdays is None and self.hours is None:
            raise ValueError("a condition needs weekdays, hours or both (or leave `when` out)")
        if self.weekdays is not None and not self.weekdays:
            raise ValueError("weekdays is empty, so the text would never be sent")
        return self


class EntryFile(BaseModel):
    """The YAML of an entry: its text and when it may be sent (a plain text is an entry without `when`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: TemplateText
    when: WhenFile | None = None


def _as_entry(raw: Any) -> Any:
    """A plain text (or any scalar, to be refused as text) is the entry of that text, so a problem in it
    is reported at the list item, and only as text."""
    return raw if isinstance(raw, dict | EntryFile) else {"text": raw}


PoolEntry = Annotated[EntryFile, BeforeValidator(_as_entry)]


def _entry_text(raw: Any) -> str | None:
    text = raw if isinstance(raw, str) else field_of(raw, "text")
    return text if isinstance(text, str) else None


def _pool_issues(data: Any) -> list[Issue]:
    """The same text twice in one section, and a section with nothing to say at any time."""
    issues: list[Issue] = []
    for name in ("openers", "replies", "followups"):
        raw = items_of(field_of(data, name))
        seen: dict[str, int] = {}
        for index, entry in enumerate(raw):
            text = _entry_text(entry)
            if text is None:
                continue
            key = " ".join(text.split()).casefold()
            where = (name, index, "text")  # a plain text's is its list item (no "text" key in the file)
            if key in seen:
                issues.append((where, f"same text as {name}[{seen[key]}]"))
            else:
                seen[key] = index
        texts = [_entry_text(entry) for entry in raw]
        if raw and all(text is not None for text in texts):
            plain = [
                text
                for entry, text in zip(raw, texts, strict=True)
                if text is not None and field_of(entry, "when") is None and "{weekday}" not in text
            ]
            if not plain:
                issues.append(
                    (
                        (name,),
                        "needs at least one text without `when` or {weekday}: it is what is said when no "
                        "condition holds, and what a fleet peer replies",
                    )
                )
    return issues


def _check_parameter(text: str) -> str:
    if not Entry(text).render():
        raise ValueError(
            "this parameter is empty when the contact's name is unknown (fleet peers, contacts without a "
            "name), and Meta refuses an empty parameter: add words around {first_name}"
        )
    return text


TemplateParameter = Annotated[TemplateText, AfterValidator(_one_line), AfterValidator(_check_parameter)]
"""One line: Meta refuses a template parameter holding a line break or a tab."""


class TemplateFile(BaseModel):
    """The YAML of an approved template: its name and language as approved in WhatsApp Manager, and the
    texts of its body parameters ({{1}}, {{2}}, ... in order), which may hold {first_name} and {weekday}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9_]{1,512}$", description="approved template name: lower case, digits, _"
    )
    language: str = Field(
        pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$", description="template language code: en_US, pt_BR"
    )
    parameters: list[TemplateParameter] = Field(
        default_factory=list, max_length=20, description="body parameter texts, in order ({{1}}, {{2}}, ...)"
    )


class PoolFile(BaseModel):
    """The YAML format of a message pool file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", description="BCP 47 code: en, pt-BR")
    description: FreeText = ""
    openers: list[PoolEntry] = Field(min_length=1, description="first messages to someone")
    replies: list[PoolEntry] = Field(min_length=1, description="answers to a received message")
    followups: list[PoolEntry] = Field(default_factory=list, description="continue a conversation we started")
    templates: list[TemplateFile] = Field(
        default_factory=list,
        description="approved templates: what a Cloud API message is sent as outside the 24 h window",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_checks(cls, data, handler, _pool_issues)


def _entry(raw: EntryFile) -> Entry:
    when = raw.when
    return Entry(raw.text, When(when.weekdays, when.hours) if when is not None else None)


def entries(*texts: str) -> tuple[Entry, ...]:
    """Plain entries (no condition) from texts."""
    return tuple(Entry(text) for text in texts)


@dataclass(frozen=True)
class _Timeline:
    """The entries that may be sent, for each stretch of the local week over which none of their
    conditions changes: a look-up is a bisection, not a test of every condition."""

    starts: tuple[int, ...]
    eligible: tuple[tuple[Entry, ...], ...]

    @classmethod
    def of(cls, options: Sequence[Entry]) -> _Timeline:
        edges = sorted({0}.union(*(entry.when.edges() for entry in options if entry.when is not None)))
        starts: list[int] = []
        eligible: list[tuple[Entry, ...]] = []
        for edge in edges:
            now = tuple(e for e in options if e.when is None or e.when.holds_at(edge))
            if not eligible or now != eligible[-1]:
                starts.append(edge)
                eligible.append(now)
        return cls(tuple(starts), tuple(eligible))

    def at(self, week_minute: int) -> tuple[Entry, ...]:
        return self.eligible[bisect.bisect_right(self.starts, week_minute) - 1]


@dataclass(frozen=True)
class Template:
    """An approved WhatsApp template as a pool names it; `render` fills its body parameters."""

    name: str
    language: str
    parameters: tuple[Entry, ...] = ()

    def render(self, first_name: str | None = None, weekday: str = "") -> dict[str, Any]:
        """What is sent and stored: ``{"name", "language", "parameters": [texts]}``."""
        return {
            "name": self.name,
            "language": self.language,
            "parameters": [entry.render(first_name, weekday) for entry in self.parameters],
        }


def template_components(parameters: Sequence[str]) -> list[dict[str, Any]]:
    """The Cloud API `components` of a template's body parameters (none: no components)."""
    if not parameters:
        return []
    return [{"type": "body", "parameters": [{"type": "text", "text": text} for text in parameters]}]


@dataclass(frozen=True)
class MessagePool:
    """The entries a number may send, by kind; `choose` picks one for a recipient and a local time."""

    language: str
    openers: tuple[Entry, ...]
    replies: tuple[Entry, ...]
    followups: tuple[Entry, ...] = ()
    templates: tuple[Template, ...] = ()
    _timelines: dict[str, _Timeline] = field(init=False, repr=False, compare=False)
    _day_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.openers or not self.replies:
            raise ValueError("a message pool needs at least one opener and one reply")
        for kind in KINDS:
            if not any(entry.timeless for entry in self.options(kind)):
                raise ValueError(f"the {kind} texts need one without a condition or {{weekday}}")
        object.__setattr__(self, "_timelines", {kind: _Timeline.of(self.options(kind)) for kind in KINDS})
        object.__setattr__(self, "_day_names", tuple(weekday_name(self.language, day) for day in range(7)))

    @classmethod
    def from_file_model(cls, pool: PoolFile) -> MessagePool:
        def convert(raw: list[EntryFile]) -> tuple[Entry, ...]:
            return tuple(_entry(item) for item in raw)

        templates = tuple(
            Template(t.name, t.language, tuple(Entry(text) for text in t.parameters)) for t in pool.templates
        )
        return cls(
            pool.language, convert(pool.openers), convert(pool.replies), convert(pool.followups), templates
        )

    def template(
        self, rng: random.Random, local: datetime, first_name: str | None = None
    ) -> dict[str, Any] | None:
        """One of the pool's templates, filled for a recipient at ``local`` (the number's own time);
        None when the pool names none."""
        if not self.templates:
            return None
        chosen = self.templates[int(rng.random() * len(self.templates))]
        return chosen.render(first_name, self._day_names[local.weekday()])

    def options(self, kind: MessageKind) -> tuple[Entry, ...]:
        """The entries of one kind; a pool without followups uses its openers for them."""
        if kind == "opener":
            return self.openers
        if kind == "reply":
            return self.replies
        return self.followups or self.openers

    def timeless(self, kind: MessageKind) -> tuple[str, ...]:
        """The texts of one kind that can be sent without knowing when or to whom (no condition, no
        ``{weekday}``; ``{first_name}`` left out as for an unknown name)."""
        return tuple(dict.fromkeys(entry.render() for entry in self.options(kind) if entry.timeless))

    def eligible(self, kind: MessageKind, local: datetime) -> tuple[Entry, ...]:
        """The entries whose condition holds at ``local`` (a time in the number's own time zone)."""
        return self._timelines[kind].at(_week_minute(local))

    def choose(
        self,
        rng: random.Random,
        kind: MessageKind,
        local: datetime,
        *,
        first_name: str | None = None,
        recent: Mapping[str, datetime] | None = None,
    ) -> str:
        """A text to send at ``local`` (an aware time in the number's own zone: its weekday and hour
        decide the conditions and ``{weekday}``).

        ``recent`` maps the texts the recipient got (or will get) to when (aware times; the store's are
        UTC): a text within `NO_REPEAT` of ``local`` is not chosen while another one is possible; when
        every text is that recent, the one sent longest ago is. Random draws come first (one is enough
        almost always), then the listing. It runs for every message planned, so it skips the costlier
        steps: no closure, no time zone conversion, a float draw rather than `random.Random.randrange`.
        """
        timeline = self._timelines[kind]
        weekday = local.weekday()
        minute = weekday * 1440 + local.hour * 60 + local.minute
        options = timeline.eligible[bisect.bisect_right(timeline.starts, minute) - 1]
        day = self._day_names[weekday]
        count = len(options)
        if not recent:
            return options[int(rng.random() * count)].render(first_name, day)
        for _ in range(_DRAWS):
            text = options[int(rng.random() * count)].render(first_name, day)
            last = recent.get(text)
            if last is None or abs(local - last) >= NO_REPEAT:
                return text
        texts = list(dict.fromkeys(entry.render(first_name, day) for entry in options))
        unused = [text for text in texts if text not in recent or abs(local - recent[text]) >= NO_REPEAT]
        if unused:
            return rng.choice(unused)
        return min(texts, key=lambda text: recent[text])


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
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
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
        try:
            check_text(person, allow="", what="the name")  # it is sent as {first_name}
        except ValueError as exc:
            problems.append(Problem(name, number, len(line) - len(person) + 1, "name", str(exc)))
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
