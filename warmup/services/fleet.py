"""The fleet file: which numbers are enrolled (provider, plan, time zone) and who the admins are.

`warmup apply FLEET.yaml` makes the database match the file. The file is checked whole before anything
is written (every problem located `FILE:LINE:COL: field: message`, plans included), then the changes are
computed against the store (`plan_changes`) and applied, each with its audit row, in ONE transaction
(`apply_changes`): a failure or a kill -9 midway leaves the fleet exactly as before. Validation refuses
everything the store would (each column's length, text no database can carry), at its file:line.
Applying is idempotent: a second run finds no changes. A number dropped from the file is retired, never
deleted, so its history stays.

Tokens are references to environment variables (`${WHAPI_TOKEN_1}`); a literal token is refused without
being repeated, and only the variable's NAME is stored. A referenced variable that is not set is an
error: the numbers could not send.

Meta business portfolios (`portfolios: {acme: {tier: TIER_1K}}`, and `portfolio: acme` on each of its
cloud_api numbers) are stored too: their numbers share one messaging limit, which the claim enforces
(`warmup.store.portfolios`). A tier written here wins; without one, Meta's is read with the numbers'
readings. Portfolios are written before the numbers naming them and dropped after the numbers left them.

Admins (the phones allowed to send chat commands) have no table: every change of the list is an `admins`
audit row, and the newest one is the current list (`current_admins`). The audit log already is the
record of who may act, so no schema change was needed for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from warmup.core.errors import UserError
from warmup.core.plan.fields import TIERS
from warmup.core.plan.model import Plan
from warmup.core.portfolio import normalize_tier
from warmup.files.loader import load_yaml_model
from warmup.files.plans import load_plan
from warmup.files.problems import PlanError, Problem, format_field
from warmup.files.source import Document
from warmup.secrets import SecretError, parse_token_ref, unset_message
from warmup.store import audit as store_audit
from warmup.store import portfolios as store_portfolios
from warmup.store.db import Engine
from warmup.store.fleet_sync import FleetWriteFailed, FleetWriter, fleet_transaction
from warmup.store.models import NumberStatus
from warmup.store.numbers import COLUMN_LIMITS, ENV_NAME, NumberConfig, list_numbers
from warmup.store.tables import InvalidWrite

E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
PORTFOLIO_NAME = store_portfolios.NAME_PATTERN
ADMINS_ACTION = "admins"
"""Audit action whose newest row holds the current admin list."""

CONFIG_FIELDS = (
    "provider",
    "token_ref",
    "base_url",
    "phone_number_id",
    "meter_url",
    "portfolio",
    "plan_name",
    "plan_path",
    "timezone",
    "registered",
)
"""Number columns the fleet file owns; the ramp position and pause state are never touched by apply."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetNumber(_Model):
    """One `numbers:` entry as written (the plan path still relative to the fleet file)."""

    phone: str = Field(description="E.164, e.g. +5511999990001")
    provider: Literal["whapi", "cloud_api", "simulator"]
    token: str = Field(description="${ENV_VAR} holding the provider token; never the token itself")
    base_url: str | None = None
    phone_number_id: str | None = Field(default=None, pattern=r"^[0-9]{1,64}$")
    meter_url: str | None = Field(
        default=None,
        description="Whapi risk meter (riskOfBlocking) URL; default: the published tools.whapi.cloud one",
    )
    portfolio: str | None = Field(
        default=None, description="Meta business portfolio (cloud_api numbers), declared under portfolios:"
    )
    plan: str = Field(min_length=1, description="plan file, relative to the fleet file")
    timezone: str
    registered: date | None = None

    @field_validator(
        "phone",
        "token",
        "phone_number_id",
        "portfolio",
        "plan",
        "timezone",
        mode="before",
    )
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value) if isinstance(value, str) else value

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not re.fullmatch(E164_PATTERN, value):
            raise ValueError(
                f"{value[:20]!r} is not an E.164 number: write + and the country code, then the digits, "
                "without spaces, e.g. +5511999990001"
            )
        return value

    @field_validator("token")
    @classmethod
    def _token_is_a_reference(cls, value: str) -> str:
        try:
            return parse_token_ref(value)
        except SecretError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value[:70]!r}: use an IANA name like America/Sao_Paulo"
            ) from None
        return check_length(value, "timezone")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^\s/]+", value) or re.search(r"\s", value) or _UNSTORABLE.search(value):
            raise ValueError(f"expected an http(s) URL like http://127.0.0.1:8765, got {value[:60]!r}")
        return check_length(value.rstrip("/"), "base_url")

    @field_validator("meter_url")
    @classmethod
    def _meter_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("provider") == "cloud_api":
            raise ValueError("the Cloud API has no risk meter: meter_url is for whapi and simulator numbers")
        return None if value is None else check_meter_url(value)

    @field_validator("portfolio")
    @classmethod
    def _portfolio(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("provider") != "cloud_api":
            raise ValueError(
                "only a cloud_api number belongs to a Meta business portfolio (its messaging limit is Meta's)"
            )
        return None if value is None else check_portfolio_name(value)

    @model_validator(mode="after")
    def _provider_needs(self) -> Self:
        if self.provider == "cloud_api" and not self.phone_number_id:
            raise ValueError("provider cloud_api needs phone_number_id (the numeric id Meta assigned)")
        if self.provider == "simulator" and not self.base_url:
            raise ValueError("provider simulator needs base_url (the simulator's address)")
        return self


METER_URL_MAX = COLUMN_LIMITS["meter_url"]
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def check_storable(value: str) -> str:
    """Text the database and the providers can carry: no control characters (NUL is refused by
    PostgreSQL), no lone surrogates (no UTF-8 form at all), no non-characters."""
    bad = _UNSTORABLE.search(value)
    if bad:
        raise ValueError(f"character U+{ord(bad.group()):04X} at position {bad.start() + 1} cannot be stored")
    return value


def check_length(value: str, column: str) -> str:
    """At most as many characters as the number's `column` holds (`warmup.store.numbers.COLUMN_LIMITS`)."""
    limit = COLUMN_LIMITS[column]
    if len(value) > limit:
        raise ValueError(f"at most {limit} characters, got {len(value)}")
    return value


def check_meter_url(value: str) -> str:
    """A risk meter URL: absolute http(s), a host, no spaces, no fragment, at most 255 characters."""
    try:
        parts = urlsplit(value)
        usable = parts.port is None or parts.port > 0  # reading the port checks it (0..65535)
    except ValueError:
        usable = False
    if (
        not usable
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or re.search(r"[\s\x00-\x1f\x7f]", value)  # PostgreSQL refuses NUL; no request carries these
        or _UNSTORABLE.search(value)  # nor lone surrogates
        or parts.fragment
    ):
        raise ValueError(
            "expected an http(s) URL like https://tools.whapi.cloud/services/riskOfBlocking, "
            f"got {value[:60]!r}"
        )
    if len(value) > METER_URL_MAX:
        raise ValueError(f"at most {METER_URL_MAX} characters, got {len(value)}")
    return value


def check_portfolio_name(value: str) -> str:
    """A portfolio name: letters, digits, ``_``, ``.`` and ``-``, from a letter or digit, at most 64."""
    if not re.fullmatch(PORTFOLIO_NAME, value):
        raise ValueError(
            f"a portfolio name is letters, digits, _ . - (at most 64, starting with a letter or digit), "
            f"got {value[:70]!r}"
        )
    return value


class FleetPortfolio(_Model):
    """One `portfolios:` entry: a Meta business portfolio whose Cloud API numbers share one messaging
    limit. Without `tier`, the tier is Meta's (read with the numbers' readings), else assumed TIER_250."""

    tier: str | None = Field(
        default=None,
        description="messaging limit set by hand (wins over Meta's): TIER_250, TIER_1K, TIER_10K, ...",
    )

    @field_validator("tier", mode="before")
    @classmethod
    def _known_tier(cls, value: Any) -> Any:
        if value is None:
            return None
        word = isinstance(value, str | int) and not isinstance(value, bool)
        tier = normalize_tier(str(value)) if word else None
        if tier is None:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {value!r}")
        return tier


class FleetFile(_Model):
    """The whole fleet file."""

    version: Literal[1] = 1
    numbers: list[FleetNumber] = Field(default_factory=list)
    portfolios: dict[str, FleetPortfolio | None] = Field(default_factory=dict)
    admins: list[str] = Field(default_factory=list)

    @field_validator("portfolios")
    @classmethod
    def _portfolio_names(cls, value: dict[str, FleetPortfolio | None]) -> dict[str, FleetPortfolio | None]:
        for name in value:
            check_portfolio_name(name)
        return value

    @field_validator("admins")
    @classmethod
    def _admin_phones(cls, value: list[str]) -> list[str]:
        for phone in value:
            if not re.fullmatch(E164_PATTERN, phone):
                raise ValueError(f"admin {phone!r} is not an E.164 number like +5511988880000")
        return value


@dataclass(frozen=True)
class NumberSpec:
    """One number as the store should hold it: plan path resolved, token as a variable name."""

    phone: str
    provider: str
    token_ref: str
    base_url: str | None
    phone_number_id: str | None
    plan_name: str
    plan_path: str
    timezone: str
    registered: date | None
    meter_url: str | None = None  # None: the provider's default meter
    portfolio: str | None = None  # the Meta business portfolio of a cloud_api number

    def config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CONFIG_FIELDS}


@dataclass(frozen=True)
class Fleet:
    """A fleet file that passed every check."""

    path: str
    numbers: tuple[NumberSpec, ...]
    admins: tuple[str, ...]
    portfolios: Mapping[str, str | None] = field(default_factory=dict)  # name -> tier set by hand


FLEET_MAX_BYTES = 4 * 1024 * 1024
"""A fleet file of 10,000 numbers is about 1.5 MiB; 4 MiB leaves room for twice that, spelled out."""

FLEET_BYTES_PER_NODE = 5
"""A fleet file may hold one YAML event per 5 characters (one entry is ~12 events in 80-200
characters): a 10,000-number fleet passes, while the work on a hostile file stays linear in its size
(at most ~840,000 events, ~15 s, for 4 MiB). Aliases stay refused, so no "billion laughs"."""


def load_fleet(path: str | Path, env: Mapping[str, str] | None = None) -> Fleet:
    """Read and fully check a fleet file; `PlanError` lists every problem (the plans' own included).

    `env` (default: the process environment) must define every referenced token variable.
    """
    source = os.environ if env is None else env
    base = Path(path).parent
    plans: dict[int, Plan] = {}
    model = load_yaml_model(
        path,
        FleetFile,
        max_bytes=FLEET_MAX_BYTES,
        bytes_per_node=FLEET_BYTES_PER_NODE,
        what="fleet file",
        check=lambda doc: _file_problems(doc, base, source, plans),
    )
    specs = []
    for index, entry in enumerate(model.numbers):
        plan = plans[index]
        specs.append(
            NumberSpec(
                phone=entry.phone,
                provider=entry.provider,
                token_ref=entry.token,
                base_url=entry.base_url,
                phone_number_id=entry.phone_number_id,
                meter_url=entry.meter_url,
                portfolio=entry.portfolio,
                plan_name=plan.name,
                plan_path=str((base / entry.plan).resolve()),
                timezone=entry.timezone,
                registered=entry.registered,
            )
        )
    portfolios = {name: entry.tier if entry else None for name, entry in model.portfolios.items()}
    return Fleet(str(path), tuple(specs), tuple(dict.fromkeys(model.admins)), portfolios)


def _file_problems(
    doc: Document, base: Path, env: Mapping[str, str], plans: dict[int, Plan]
) -> list[Problem]:
    """What the model cannot see: duplicate phones, plans that fail to load, unset token variables,
    portfolios not declared under `portfolios:`."""
    problems: list[Problem] = []
    entries = doc.data.get("numbers") if isinstance(doc.data, dict) else None
    if not isinstance(entries, list):
        return problems
    declared = doc.data.get("portfolios") if isinstance(doc.data, dict) else None
    portfolios = set(declared) if isinstance(declared, dict) else set()
    seen: dict[str, int] = {}
    loaded: dict[Path, Plan | None] = {}  # each plan file is read once, its problems reported once
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        phone = entry.get("phone")
        if isinstance(phone, str):
            if phone in seen:
                where = ("numbers", index, "phone")
                message = f"{phone} is listed twice (first as numbers[{seen[phone]}])"
                problems.append(doc.problem(where, format_field(where), message))
            else:
                seen[phone] = index
        problems += _plan_problems(doc, base, index, entry.get("plan"), plans, loaded)
        portfolio = entry.get("portfolio")
        if isinstance(portfolio, str) and portfolio not in portfolios:
            where = ("numbers", index, "portfolio")
            names = ", ".join(sorted(map(str, portfolios)))
            known = f"declared: {names}" if portfolios else "none is declared"
            message = f"portfolio {portfolio!r} is not declared under portfolios: ({known})"
            problems.append(doc.problem(where, format_field(where), message))
        token = entry.get("token")
        if isinstance(token, str):
            try:
                name = parse_token_ref(token)
            except SecretError:
                continue  # the model reports it
            value = env.get(name)
            if value is None or not value.strip():
                where = ("numbers", index, "token")
                message = unset_message(name, "it must hold this number's token")
                problems.append(doc.problem(where, format_field(where), message))
            elif not ENV_NAME.match(name):  # the store keeps only such names (never echo a maybe-token)
                where = ("numbers", index, "token")
                message = (
                    "a token variable's name is capital letters, digits and _ (at most 64, not starting "
                    "with a digit), e.g. ${WHAPI_TOKEN_1}"
                )
                problems.append(doc.problem(where, format_field(where), message))
    return problems


def _plan_problems(
    doc: Document, base: Path, index: int, ref: Any, plans: dict[int, Plan], loaded: dict[Path, Plan | None]
) -> list[Problem]:
    if not isinstance(ref, str) or not ref.strip() or _UNSTORABLE.search(ref):
        return []  # the model reports an unusable path
    where = ("numbers", index, "plan")
    target = base / ref
    if not target.is_file():
        message = f"plan file {str(target)[:200]!r} not found (paths are relative to the fleet file)"
        return [doc.problem(where, format_field(where), message)]
    resolved = target.resolve()
    limit = COLUMN_LIMITS["plan_path"]
    if len(str(resolved)) > limit:
        message = f"the plan's full path is {len(str(resolved))} characters, at most {limit} are stored"
        return [doc.problem(where, format_field(where), message)]
    if resolved in loaded:
        plan = loaded[resolved]
        if plan is not None:
            plans[index] = plan
        return []
    try:
        plans[index] = loaded[resolved] = load_plan(target)
    except PlanError as exc:
        loaded[resolved] = None
        return list(exc.problems)
    return []


# ----------------------------------------------------------------------------------------- changes


ChangeKind = Literal[
    "add", "update", "reactivate", "retire", "admins", "add_portfolio", "set_portfolio", "drop_portfolio"
]


@dataclass(frozen=True)
class Change:
    """One step of an apply: what happens to which number (or to the admin list), field by field."""

    kind: ChangeKind
    phone: str | None = None  # None for the admin list
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (before, after)
    spec: NumberSpec | None = None
    admins: tuple[str, ...] = ()
    portfolio: str | None = (
        None  # the portfolio an `add_portfolio`, `set_portfolio`, `drop_portfolio` is about
    )

    def describe(self) -> str:
        """One line for a person: `update +55...: timezone America/Sao_Paulo -> Europe/Berlin`."""
        if self.kind in ("add_portfolio", "set_portfolio"):
            old, new = self.fields["tier"]
            if self.kind == "add_portfolio":
                return f"add portfolio {self.portfolio}: tier {_tier_shown(new)}"
            return f"set portfolio {self.portfolio}: tier {_tier_shown(old)} -> {_tier_shown(new)}"
        if self.kind == "drop_portfolio":
            return f"drop portfolio {self.portfolio}: no longer in the fleet file"
        if self.kind == "admins":
            before = ", ".join(self.fields["admins"][0]) or "none"
            return f"set admins: {before} -> {', '.join(self.admins) or 'none'}"
        if self.kind == "add":
            assert self.spec is not None
            spec = self.spec
            return f"add {self.phone}: {spec.provider}, plan {spec.plan_name}, {spec.timezone}"
        if self.kind == "retire":
            return f"retire {self.phone}: no longer in the fleet file (history kept)"
        parts = [f"{name} {_shown(old)} -> {_shown(new)}" for name, (old, new) in self.fields.items()]
        return f"{self.kind} {self.phone}: " + ("; ".join(parts) or "back in the fleet file")


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def _tier_shown(tier: str | None) -> str:
    return tier or "Meta's (read with its numbers' readings)"


def current_admins(engine: Engine) -> tuple[str, ...]:
    """The admin phones of the last apply (empty before the first one)."""
    detail = store_audit.latest_detail(engine, ADMINS_ACTION)
    if not isinstance(detail, dict):
        return ()
    return tuple(str(phone) for phone in detail.get("admins", []))


def plan_changes(engine: Engine, fleet: Fleet) -> list[Change]:
    """What `apply_changes` would do to make the store match `fleet` (empty: nothing to do).

    Portfolios are written before the numbers that name them and dropped after the numbers left them."""
    stored = {number.phone: number for number in list_numbers(engine)}
    changes: list[Change] = []
    tiers = store_portfolios.stored_tiers(engine)
    for name, tier in fleet.portfolios.items():
        if name not in tiers:
            changes.append(Change("add_portfolio", fields={"tier": (None, tier)}, portfolio=name))
        elif tiers[name] != tier:
            changes.append(Change("set_portfolio", fields={"tier": (tiers[name], tier)}, portfolio=name))
    for spec in fleet.numbers:
        number = stored.get(spec.phone)
        if number is None:
            changes.append(Change("add", spec.phone, spec=spec))
            continue
        diff = {
            name: (getattr(number, name), value)
            for name, value in spec.config().items()
            if getattr(number, name) != value
        }
        if number.state == NumberStatus.RETIRED:
            diff["state"] = (number.state, NumberStatus.ACTIVE.value)
            changes.append(Change("reactivate", spec.phone, diff, spec=spec))
        elif diff:
            changes.append(Change("update", spec.phone, diff, spec=spec))
    wanted = {spec.phone for spec in fleet.numbers}
    for phone, number in sorted(stored.items()):
        if phone not in wanted and number.state != NumberStatus.RETIRED:
            changes.append(Change("retire", phone, {"state": (number.state, NumberStatus.RETIRED.value)}))
    for name in sorted(set(tiers) - set(fleet.portfolios)):
        changes.append(Change("drop_portfolio", portfolio=name))
    before = current_admins(engine)
    if before != fleet.admins:
        changes.append(Change("admins", fields={"admins": (before, fleet.admins)}, admins=fleet.admins))
    return changes


def apply_changes(
    engine: Engine, changes: list[Change], *, actor: str = "apply", now: datetime | None = None
) -> None:
    """Carry out `changes` (from `plan_changes`), each with one audit row, all in ONE transaction: they
    commit together or, on any error or a kill, not at all (`warmup.store.fleet_sync`). Never writes a
    token. A database failure raises `ApplyFailed` (one line, no SQL), after the rollback."""
    try:
        with fleet_transaction(engine, now or datetime.now(UTC)) as writer:
            writer.lock(
                [change.phone for change in changes if change.phone is not None],
                [change.portfolio for change in changes if change.portfolio is not None],
            )
            adds = [change for change in changes if change.kind == "add"]
            for change in changes:
                if change.kind != "add":
                    _apply_one(writer, change, actor)
                elif change is adds[0]:  # the new numbers, in one statement, where the first one was
                    _add_all(writer, adds, actor)
    except FleetWriteFailed as exc:
        raise ApplyFailed(
            f"the database refused the apply ({exc}); it was rolled back, nothing changed"
        ) from None
    except InvalidWrite as exc:
        raise ApplyFailed(
            f"the store refused the apply ({exc}); it was rolled back, nothing changed"
        ) from None


class ApplyFailed(UserError):
    """`warmup apply` failed and was rolled back: the fleet is as it was before."""


def _add_all(writer: FleetWriter, adds: list[Change], actor: str) -> None:
    """Enroll every new number at once, each with its `fleet_add` audit row."""
    specs = [change.spec for change in adds if change.spec is not None]
    ids = writer.add_numbers([NumberConfig(**spec.config(), phone=spec.phone) for spec in specs])  # type: ignore[typeddict-item]
    writer.audit_many(
        [
            {
                "actor": actor,
                "action": "fleet_add",
                "number_id": number_id,
                "detail": {"config": {k: _json(v) for k, v in spec.config().items()}},
            }
            for spec, number_id in zip(specs, ids, strict=True)
        ]
    )


def _apply_one(writer: FleetWriter, change: Change, actor: str) -> None:
    detail: dict[str, Any] = {name: [_json(old), _json(new)] for name, (old, new) in change.fields.items()}
    if change.kind in ("add", "update", "reactivate"):
        assert change.spec is not None
        number_id, _ = writer.upsert_number(phone=change.spec.phone, **change.spec.config())
        if change.kind == "reactivate":
            writer.set_lifecycle(number_id, NumberStatus.ACTIVE, "back in the fleet file")
        if change.kind == "add":
            detail = {"config": {k: _json(v) for k, v in change.spec.config().items()}}
        writer.audit(actor, f"fleet_{change.kind}", number_id, detail)
    elif change.kind in ("add_portfolio", "set_portfolio"):
        assert change.portfolio is not None
        writer.set_portfolio(change.portfolio, change.fields["tier"][1])
        writer.audit(
            actor, f"fleet_{change.kind}", None, {"portfolio": change.portfolio, "tier": detail["tier"]}
        )
    elif change.kind == "drop_portfolio":
        assert change.portfolio is not None
        left = writer.drop_portfolio(change.portfolio)
        writer.audit(
            actor, "fleet_drop_portfolio", None, {"portfolio": change.portfolio, "numbers_left": left}
        )
    elif change.kind == "retire":
        assert change.phone is not None
        retired = writer.number_id(change.phone)
        if retired is not None:
            skipped = writer.set_lifecycle(retired, NumberStatus.RETIRED, "number retired")
            writer.audit(actor, "fleet_retire", retired, {**detail, "skipped": skipped})
    else:
        before = list(change.fields["admins"][0]) if "admins" in change.fields else []
        writer.audit(actor, ADMINS_ACTION, None, {"admins": list(change.admins), "before": before})


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
