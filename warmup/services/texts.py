"""What numbers say and to whom, read from the plan's files: message pools and contact lists, cached per
process and re-read only when a file changes.

Planning (openers, `choose_texts`) and peer replies (`warmup.services.peers`, `texts_of`) both draw texts
here, so neither imports the other.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from warmup.core.plan.model import Plan
from warmup.files.content import MessageKind, MessagePool, entries, first_name_of, load_contacts, load_pool
from warmup.services.runtime import FileCache, Runtime

log = logging.getLogger(__name__)

DEFAULT_OPENERS: tuple[str, ...] = (
    "Hi! How are you doing?",
    "Hello, hope your day is going well",
    "Hey, how have you been?",
    "Good to hear from you, how is everything?",
)
"""Used when a plan names no message pool, so a minimal plan still sends something human."""

DEFAULT_REPLIES: tuple[str, ...] = (
    "All good here, thanks! And you?",
    "Doing well, thanks for asking",
    "Great, thanks! Talk soon",
)


DEFAULT_POOL = MessagePool("en", entries(*DEFAULT_OPENERS), entries(*DEFAULT_REPLIES))

_POOLS: FileCache[MessagePool] = FileCache(load_pool)
"""Message pools by path: `texts_of` runs for every peer reply, the file is read again only when edited."""


def pool_of(plan: Plan) -> MessagePool:
    """The plan's message pool, or `DEFAULT_POOL` when it names none."""
    return _POOLS(plan.content) if plan.content else DEFAULT_POOL


def texts_of(plan: Plan, kind: str = "opener") -> tuple[str, ...]:
    """The plan's texts of one kind (``opener`` or ``reply``) that need no local time and no name (no
    condition, no ``{weekday}``, ``{first_name}`` left out), or neutral defaults without a pool."""
    return pool_of(plan).timeless("reply" if kind == "reply" else "opener")


def choose_texts(
    pool: MessagePool,
    kind: MessageKind,
    sends: Sequence[tuple[str, datetime]],
    timezone: str,
    first_names: Mapping[str, str],
    recent: Mapping[str, Mapping[str, datetime]],
    rng: random.Random,
) -> list[str]:
    """The text of each (recipient, scheduled time) of ``sends``, in order: what the pool allows at
    that moment in the number's ``timezone``, with the recipient's first name when known, and none a
    recipient got (``recent``: recipient -> text -> when) or gets earlier in ``sends`` within a week,
    unless every possible text was."""
    zone = ZoneInfo(timezone)
    got: dict[str, dict[str, datetime]] = {}
    texts: list[str] = []
    for recipient, at in sends:
        history = got.get(recipient)
        if history is None:
            history = got[recipient] = dict(recent.get(recipient, {}))
        text = pool.choose(
            rng, kind, at.astimezone(zone), first_name=first_names.get(recipient), recent=history
        )
        history[text] = at
        texts.append(text)
    return texts


def _contact_phones(path: str) -> tuple[str, ...]:
    return tuple(c.phone for c in load_contacts(path))


CONTACTS: FileCache[tuple[str, ...]] = FileCache(_contact_phones)
"""Contact phones by CSV path: every day planned needs them, the file is read again only when edited."""


def _first_names(path: str) -> Mapping[str, str]:
    names = ((c.phone, first_name_of(c.name)) for c in load_contacts(path))
    return {phone: name for phone, name in names if name}


FIRST_NAMES: FileCache[Mapping[str, str]] = FileCache(_first_names)
"""Contacts' first names by phone (those with a name), by CSV path, for ``{first_name}``."""


class PlanFiles:
    """The plans, contact lists and message pools of one batch, each looked up once per batch.

    The process-wide caches behind them (`Runtime.plans`, `CONTACTS`, `FIRST_NAMES`, `_POOLS`) check the
    file's modification time on every call; a batch plans many numbers on the same few files.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._plans: dict[str, Plan] = {}
        self._contacts: dict[str, tuple[str, ...]] = {}
        self._texts: dict[str | None, tuple[str, ...]] = {}
        self._pools: dict[str | None, MessagePool] = {}
        self._names: dict[str, Mapping[str, str]] = {}

    def plan(self, path: str) -> Plan:
        plan = self._plans.get(path)
        if plan is None:
            plan = self._plans[path] = self._runtime.plans(path)
        return plan

    def contacts(self, path: str) -> tuple[str, ...]:
        phones = self._contacts.get(path)
        if phones is None:
            phones = self._contacts[path] = CONTACTS(path)
        return phones

    def texts(self, plan: Plan) -> tuple[str, ...]:
        texts = self._texts.get(plan.content)
        if texts is None:
            texts = self._texts[plan.content] = texts_of(plan)
        return texts

    def pool(self, plan: Plan) -> MessagePool:
        pool = self._pools.get(plan.content)
        if pool is None:
            pool = self._pools[plan.content] = pool_of(plan)
        return pool

    def first_names(self, path: str) -> Mapping[str, str]:
        names = self._names.get(path)
        if names is None:
            names = self._names[path] = FIRST_NAMES(path)
        return names
