"""Fault injection for the simulator: what can go wrong between a client and the API, as probabilities.

A `FaultSpec` is a set of independent knobs. Extra latency is drawn on its own (it adds to whatever
happens next); the failure kinds are mutually exclusive, drawn from one uniform number, so their
probabilities must sum to at most 1. Specs apply globally or per channel (a channel's spec replaces
the global one) and can be limited to some operations (`send`, `health`, `list`, `settings`, `meter`,
`cloud_send`, `cloud_status`).

Which faults *perform* the operation matters for the ambiguous-outcome tests, so it is fixed here:

| kind | HTTP | operation performed? |
|---|---|---|
| `rate_limit` | 429 + `Retry-After`, Whapi error envelope | no |
| `server_error` | 500, 502 or 503, error envelope | no |
| `timeout` | held `hold_seconds`, then 504 | no |
| `timeout_after_send` | performed, then held `hold_seconds`, then the normal answer | yes |
| `html` | 502 with an HTML error page | no |
| `malformed` | the normal status, a body that is not JSON | yes |
| `truncated` | the normal status, the JSON cut in half | yes |
| `empty` | the normal status, an empty body | yes |

The simulator's send log is the ground truth of what was performed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

OPERATIONS: frozenset[str] = frozenset(
    {"send", "health", "list", "settings", "meter", "cloud_send", "cloud_status"}
)


class FaultKind(StrEnum):
    """One failure the simulator can inject instead of (or on top of) a normal answer."""

    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    TIMEOUT_AFTER_SEND = "timeout_after_send"
    HTML = "html"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    EMPTY = "empty"


PERFORMS_OPERATION: frozenset[FaultKind] = frozenset(
    {FaultKind.TIMEOUT_AFTER_SEND, FaultKind.MALFORMED, FaultKind.TRUNCATED, FaultKind.EMPTY}
)
"""Faults after which the operation has really happened, although the client cannot tell."""

_ALIASES = {"429": "rate_limit", "5xx": "server_error", "500": "server_error", "latency_p": "latency"}


@dataclass(frozen=True)
class FaultPick:
    """The draw for one request: seconds of extra latency and at most one failure."""

    latency: float = 0.0
    kind: FaultKind | None = None


@dataclass(frozen=True)
class FaultSpec:
    """Probabilities (0..1) of each fault plus their parameters; all zero means a healthy API."""

    latency: float = 0.0
    latency_ms: tuple[int, int] = (50, 250)
    rate_limit: float = 0.0
    retry_after: int = 2
    server_error: float = 0.0
    timeout: float = 0.0
    timeout_after_send: float = 0.0
    hold_seconds: float = 30.0
    html: float = 0.0
    malformed: float = 0.0
    truncated: float = 0.0
    empty: float = 0.0
    operations: frozenset[str] = field(default_factory=frozenset)  # empty = every operation

    def __post_init__(self) -> None:
        for kind in (*FaultKind, "latency"):
            p = getattr(self, str(kind))
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault {kind}: probability must be within 0..1, got {p}")
        if sum(getattr(self, str(kind)) for kind in FaultKind) > 1.0 + 1e-9:
            raise ValueError("fault probabilities (except latency) must sum to at most 1")
        low, high = self.latency_ms
        if not 0 <= low <= high:
            raise ValueError(f"latency_ms must be LOW-HIGH with 0 <= LOW <= HIGH, got {low}-{high}")
        if self.retry_after < 0 or self.hold_seconds < 0:
            raise ValueError("retry_after and hold_seconds must not be negative")
        unknown = self.operations - OPERATIONS
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; known: {sorted(OPERATIONS)}")

    @property
    def active(self) -> bool:
        return self.latency > 0 or any(getattr(self, str(kind)) > 0 for kind in FaultKind)

    def pick(self, rng: random.Random, operation: str) -> FaultPick:
        """Draw the faults of one request to `operation` (consumes randomness only when active)."""
        if not self.active or (self.operations and operation not in self.operations):
            return FaultPick()
        latency = 0.0
        if self.latency > 0 and rng.random() < self.latency:
            latency = rng.uniform(*self.latency_ms) / 1000.0
        u = rng.random()
        for kind in FaultKind:
            p: float = getattr(self, str(kind))
            if u < p:
                return FaultPick(latency, kind)
            u -= p
        return FaultPick(latency, None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ms"] = list(self.latency_ms)
        data["operations"] = sorted(self.operations)
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: FaultSpec | None = None) -> FaultSpec:
        """Build from JSON-like data (admin endpoint, config files); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        changes: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = _ALIASES.get(raw_key, raw_key)
            if key not in known:
                raise ValueError(f"unknown fault setting {raw_key!r}; known: {sorted(known)}")
            changes[key] = _coerce(key, value)
        return replace(base or cls(), **changes)


def _coerce(key: str, value: Any) -> Any:
    if key == "latency_ms":
        if isinstance(value, str):
            low, _, high = value.removesuffix("ms").partition("-")
            return (int(low), int(high or low))
        if isinstance(value, list | tuple) and len(value) == 2:
            return (int(value[0]), int(value[1]))
        raise ValueError("latency_ms must be 'LOW-HIGH' or [LOW, HIGH] milliseconds")
    if key == "operations":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple | set | frozenset):
            raise ValueError("operations must be a list or a comma-separated string")
        return frozenset(str(item).strip() for item in items if str(item).strip())
    if key == "retry_after":
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be a number")
    return float(value)


def parse_fault_args(args: list[str]) -> tuple[FaultSpec, dict[str, FaultSpec]]:
    """Parse CLI `--fault` values: `KIND=VALUE` (global) or `PHONE:KIND=VALUE` (one channel).

    Examples: `rate_limit=0.1`, `5xx=0.05`, `latency=0.5`, `latency_ms=50-300`, `+5511999990001:timeout=0.2`.
    """
    global_items: dict[str, str] = {}
    channel_items: dict[str, dict[str, str]] = {}
    for arg in args:
        target, sep, setting = arg.rpartition(":") if ":" in arg.split("=", 1)[0] else ("", "", arg)
        key, eq, value = setting.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--fault {arg!r}: expected KIND=VALUE or PHONE:KIND=VALUE")
        if sep:
            channel_items.setdefault(target.strip(), {})[key.strip()] = value.strip()
        else:
            global_items[key.strip()] = value.strip()
    global_spec = FaultSpec.from_mapping(global_items)
    return global_spec, {phone: FaultSpec.from_mapping(items) for phone, items in channel_items.items()}
