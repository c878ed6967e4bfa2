"""What numbers say and to whom, read from the plan's files: message pools and contact lists, cached per
process and re-read only when a file changes.

Planning (openers) and peer replies (`warmup.services.peers`) both draw texts here, so neither imports
the other.
"""

from __future__ import annotations

import logging

from warmup.core.plan.model import Plan
from warmup.files.content import MessagePool, load_contacts, load_pool
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


_POOLS: FileCache[MessagePool] = FileCache(load_pool)
"""Message pools by path: `texts_of` runs for every peer reply, the file is read again only when edited."""


def texts_of(plan: Plan, kind: str = "opener") -> tuple[str, ...]:
    """The plan's texts of one kind (``opener`` or ``reply``), or neutral defaults without a pool."""
    if plan.content:
        return _POOLS(plan.content).options("reply" if kind == "reply" else "opener")
    return DEFAULT_REPLIES if kind == "reply" else DEFAULT_OPENERS


def _contact_phones(path: str) -> tuple[str, ...]:
    return tuple(c.phone for c in load_contacts(path))


CONTACTS: FileCache[tuple[str, ...]] = FileCache(_contact_phones)
"""Contact phones by CSV path: every day planned needs them, the file is read again only when edited."""


class PlanFiles:
    """The plans, contact lists and message pools of one batch, each looked up once per batch.

    The process-wide caches behind them (`Runtime.plans`, `CONTACTS`, `_POOLS`) check the file's
    modification time on every call; a batch plans many numbers on the same few files.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._plans: dict[str, Plan] = {}
        self._contacts: dict[str, tuple[str, ...]] = {}
        self._texts: dict[str | None, tuple[str, ...]] = {}

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
