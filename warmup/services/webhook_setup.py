"""`warmup webhook register`: point each Whapi number's webhook at this deployment's receiver.

Whapi delivers a channel's events to the webhooks in its settings (`PATCH /settings`, spec `Settings`:
`webhooks: [{url, events, mode, headers}]`). Each number gets ONE webhook of ours,
`BASE/webhooks/whapi/DIGITS` (what `warmup webhook` serves), for `messages` and `statuses` posted as a
JSON body (mode `body`), carrying the shared secret in the `X-Warmup-Secret` header. The channel's
other webhooks are kept as they are; an earlier webhook of ours for the number (another base URL) is
replaced, so moving the receiver does not leave the old address receiving.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from warmup.core.errors import UserError
from warmup.providers.base import Provider, ProviderError
from warmup.providers.whapi import WhapiProvider
from warmup.secrets import Secret, redact
from warmup.services.admin import number_by_phone
from warmup.services.readings import WHAPI_KINDS
from warmup.services.runtime import provider_from_row
from warmup.store.db import Engine
from warmup.store.models import Number, NumberStatus
from warmup.store.numbers import list_numbers

RECEIVER_PATH = "/webhooks/whapi/"
SECRET_HEADER = "X-Warmup-Secret"
EVENTS: tuple[dict[str, str], ...] = (
    {"type": "messages", "method": "post"},
    {"type": "statuses", "method": "post"},
)
"""What the receiver stores: incoming messages (replies, admin commands) and our messages' statuses."""

ProviderFactory = Callable[[Number], Provider]


@dataclass(frozen=True)
class Registration:
    """What happened to one number's webhook."""

    phone: str
    url: str  # the webhook URL meant for it
    error: str | None = None  # None: set
    kept: int = 0  # other webhooks of the channel left as they were

    @property
    def done(self) -> bool:
        return self.error is None


def check_base_url(base_url: str) -> str:
    """The public base URL of `warmup webhook` (http(s), a host, no query); without a trailing slash."""
    try:
        parts = urlsplit(base_url.strip())
        usable = parts.port is None or parts.port > 0
    except ValueError:
        usable = False
    if (
        not usable
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment  # BASE#x/webhooks/whapi/... would reach BASE alone
        or re.search(r"[\s\x00-\x1f\x7f]", base_url.strip())
    ):
        raise UserError(
            f"{base_url[:80]!r} is not a base URL: give where `warmup webhook` is reachable from Whapi, "
            "e.g. https://warmup.example.com"
        )
    return base_url.strip().rstrip("/")


def receiver_url(base_url: str, phone: str) -> str:
    """The receiver's address for one number (the phone's digits, no `+` to encode)."""
    return f"{base_url}{RECEIVER_PATH}{phone.lstrip('+')}"


def _ours(hook: Mapping[str, Any], phone: str) -> bool:
    """A webhook of ours for this number, at any base URL."""
    url = hook.get("url")
    if not isinstance(url, str):
        return False
    path = urlsplit(url).path.rstrip("/")
    return re.fullmatch(rf".*{re.escape(RECEIVER_PATH)}\+?{re.escape(phone.lstrip('+'))}", path) is not None


def webhook_of(url: str, secret: Secret) -> dict[str, Any]:
    """One webhook as the spec writes it (`Webhook`)."""
    return {
        "url": url,
        "events": [dict(event) for event in EVENTS],
        "mode": "body",
        "headers": {SECRET_HEADER: secret.reveal()},
    }


def register_number(number: Number, base_url: str, secret: Secret, factory: ProviderFactory) -> Registration:
    """Set one number's webhook: read the channel's webhooks, replace ours, keep the others. Never raises."""
    url = receiver_url(base_url, number.phone)
    try:
        provider = factory(number)
    except Exception as exc:  # SecretError / UserError: names the variable, never the token
        return Registration(number.phone, url, f"no client: {exc}")
    try:
        if not isinstance(provider, WhapiProvider):
            return Registration(number.phone, url, f"provider {number.provider} has no Whapi settings")
        hooks = provider.webhooks()
        others = [hook for hook in hooks if not _ours(hook, number.phone)]
        provider.set_webhooks([*others, webhook_of(url, secret)])
        return Registration(number.phone, url, kept=len(others))
    except ProviderError as exc:  # the reason has no token; nor the secret, should an answer echo it
        return Registration(number.phone, url, redact(exc.reason, [secret]))
    finally:
        provider.close()


def targets(engine: Engine, phone: str | None) -> list[Number]:
    """The numbers to register: every non-retired Whapi (or simulator) number, or the one named."""
    if phone is None:
        found = [
            n for n in list_numbers(engine) if n.provider in WHAPI_KINDS and n.state != NumberStatus.RETIRED
        ]
        if not found:
            raise UserError("no Whapi numbers enrolled: run `warmup apply FLEET.yaml` first")
        return found
    number = number_by_phone(engine, phone)
    if number.provider not in WHAPI_KINDS:
        raise UserError(
            f"{number.phone} uses provider {number.provider}: its webhook is set in the Meta app dashboard "
            "(callback URL BASE/webhooks/cloud), not through Whapi's settings"
        )
    return [number]


def register_webhooks(
    engine: Engine,
    base_url: str,
    secret: Secret,
    *,
    phone: str | None = None,
    factory: ProviderFactory = provider_from_row,
) -> Sequence[Registration]:
    """Point the webhook of each target number (`targets`) at `base_url`'s receiver, one at a time."""
    base = check_base_url(base_url)
    return [register_number(number, base, secret, factory) for number in targets(engine, phone)]
