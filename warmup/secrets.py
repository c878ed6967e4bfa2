"""Tokens as environment-variable references, a masked `Secret` wrapper and redaction helpers.

Fleet files and database rows hold only the NAME of an environment variable (`${WHAPI_TOKEN_1}`); the
token itself lives in memory inside a `Secret`, whose repr/str are masked so it cannot leak through a
log line, an exception message or a debugger print by accident. Every `Secret` registers its value with
a process-wide registry that `RedactingFilter` (stdlib logging) and `redact_processor` (structlog) use
to mask the token should it still reach a log record, e.g. inside a provider's error text.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from warmup.core.errors import UserError

MASK = "***"
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words; no real token is that short
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REF = re.compile(r"\$\{([^}]*)\}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+")
# one part of a variable name as people write them: a short word in one case, then maybe a number
_NAME_WORD = re.compile(r"[A-Z]{1,12}[0-9]{0,3}|[a-z]{1,12}[0-9]{0,3}|[0-9]{1,3}")

_known: set[str] = set()
_known_lock = threading.Lock()


class SecretError(UserError):
    """A token reference in a fleet file is wrong (a literal token, a bad name, an unset variable)."""


class Secret:
    """A token held in memory; only `reveal()` gives the value, every other view is masked."""

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str | None = None) -> None:
        self._value = value
        self.name = name  # the environment variable it came from, safe to show
        register_secret(value)

    def reveal(self) -> str:
        """The plain token, for the one place that needs it (an Authorization header)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self.name is None else f"Secret({MASK!r}, name={self.name!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled (it would write the token out)")


def register_secret(value: str | Secret) -> None:
    """Make the log redaction know `value`, so it is masked wherever it appears."""
    plain = value.reveal() if isinstance(value, Secret) else value
    if len(plain) >= _MIN_SECRET_LEN:
        with _known_lock:
            _known.add(plain)


def known_secrets() -> frozenset[str]:
    """The values registered so far (for the redaction helpers; never print this)."""
    with _known_lock:
        return frozenset(_known)


def looks_like_token(text: str) -> bool:
    """Heuristic for a literal token pasted where an env-var name belongs.

    Variable names are short and read like words joined by underscores; tokens are long runs of mixed
    case letters and digits (Whapi: 32 chars, Meta: `EAA...` 150+ chars) or contain `.`/`-`/`=`.
    """
    if not _ENV_NAME.fullmatch(text):
        return True
    if len(text) >= 24 and "_" not in text:
        return True
    has_lower = any(c.islower() for c in text)
    has_upper = any(c.isupper() for c in text)
    has_digit = any(c.isdigit() for c in text)
    return len(text) >= 20 and has_lower and has_upper and has_digit


def parse_token_ref(ref: str) -> str:
    """The environment-variable name in `${NAME}` or `NAME`; `SecretError` for anything else.

    The message never repeats `ref` when it might be a token.
    """
    text = ref.strip()
    match = _REF.fullmatch(text)
    name = match.group(1).strip() if match else text
    if not name:
        raise SecretError("token reference is empty: write ${NAME} with the environment variable's name")
    if looks_like_token(name):
        raise SecretError(
            "token looks like a literal token: fleet files must reference an environment variable, "
            "e.g. token: ${WHAPI_TOKEN_1}, and the token goes into that variable"
        )
    return name


def shown_name(name: str) -> str:
    """`name` as an error may show it: whole when it reads like a variable name, else a hint.

    `looks_like_token` lets through a literal token in one letter case under 24 characters (e.g.
    `abcdef0123456789abcd`); an error about an unset variable must not print it back, so anything that
    is not made of short words and numbers joined by `_` shows only its first 2 characters and length.
    """
    if len(name) <= 48 and all(_NAME_WORD.fullmatch(part) for part in name.split("_")):
        return name
    return f"{name[:2]}… ({len(name)} characters)"


def unset_message(name: str, purpose: str = "it should hold the token") -> str:
    """The error for a token variable that is not set, never echoing what might be a token."""
    return f"environment variable {shown_name(name)} is not set ({purpose})"


def resolve_token(ref: str, env: Mapping[str, str] | None = None) -> Secret:
    """Read the token named by `ref` (`${NAME}` or `NAME`) from `env` (default: os.environ)."""
    name = parse_token_ref(ref)
    source = os.environ if env is None else env
    value = source.get(name)
    if value is None or not value.strip():
        raise SecretError(unset_message(name))
    return Secret(value.strip(), name=name)


def redact(text: str, secrets: Iterable[str | Secret] = ()) -> str:
    """`text` with every given secret, every registered secret and any `Bearer <x>` value masked."""
    values = {s.reveal() if isinstance(s, Secret) else s for s in secrets} | known_secrets()
    # longest first, so a token that contains another one is masked whole
    for value in sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)


def clip(text: str, limit: int, secrets: Iterable[str | Secret] = ()) -> str:
    """`text` masked, THEN cut to `limit` characters (with "…"): cutting first could split a token
    across the cut, and the half left in the text would no longer match the mask."""
    text = redact(text, secrets)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in the message, its args and the traceback.

    Attach it to HANDLERS (`install_log_redaction`): a filter on a logger does not see records that
    propagate up from child loggers.
    """

    def __init__(self, extra: Iterable[str | Secret] = ()) -> None:
        super().__init__()
        self._extra = tuple(extra)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message, self._extra)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._extra)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._extra)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one `RedactingFilter` to every handler of `logger` (default: root); returns it."""
    target = logger or logging.getLogger()
    flt = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask registered secrets in every string value of the event."""
    for key, value in list(event_dict.items()):
        if isinstance(value, Secret):
            event_dict[key] = MASK
        elif isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict
