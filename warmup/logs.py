"""Logging setup for every warmup process: readable lines, or one JSON object per line, tokens masked.

`setup_logging()` reads `WARMUP_LOG_FORMAT` (`console` | `json`) and `WARMUP_LOG_LEVEL` from the settings.
Every handler it installs carries `warmup.secrets.RedactingFilter`, so a token that reaches a log record
(inside a provider's error text, an exception, a URL) is replaced by `***` before it is written.
structlog, when used, gets the same redaction through `warmup.secrets.redact_processor`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from warmup.config import Settings
from warmup.secrets import RedactingFilter, redact, redact_processor

QUIET_LOGGERS = ("alembic", "httpx", "httpcore")
"""Libraries whose INFO lines (one per schema check, one per HTTP request) are noise at INFO; their
warnings still show."""

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, event, any `extra=` fields, exc (redacted)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = redact(value) if isinstance(value, str) else _plain(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = redact(record.exc_text)
        return json.dumps(payload, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return redact(str(value))


def setup_logging(
    fmt: str | None = None, level: str | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one redacting handler; returns it.

    `fmt`/`level` default to the settings (`WARMUP_LOG_FORMAT`, `WARMUP_LOG_LEVEL`).
    """

    settings = Settings()
    fmt = fmt or settings.log_format
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or settings.log_level).upper())
    for noisy in QUIET_LOGGERS:  # INFO lines on every schema check / HTTP request bury warmup's own
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _setup_structlog(fmt)
    return handler


def _setup_structlog(fmt: str) -> None:
    """Route structlog through the same redaction and the same format (used by nobody yet, ready)."""
    import structlog  # late on purpose: nothing logs through structlog yet, and it costs ~55 ms

    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
