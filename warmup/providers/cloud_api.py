"""Meta WhatsApp Cloud API client (Graph API): send text/template, and what Meta says about the number.

The Cloud API has no risk meter like Whapi's: `fetch_reading` returns None (reason in
`last_reading_error`). What Meta does say about a number, `quality()` reads with one
`GET /{version}/{phone-number-id}?fields=quality_rating,status,<messaging limit>`: its quality rating
(GREEN, YELLOW, RED; NA while unrated), its status (CONNECTED, FLAGGED, RESTRICTED, ...) and its
messaging limit. The limit's field depends on the API version (`limit_field`): the v23 spec names it
`messaging_limit_tier`; earlier versions `whatsapp_business_manager_messaging_limit`. A Graph API
version refuses a field it does not have, so only the version's own field is asked for.

Every day planned for a Cloud API number reads them into its risk reading (`PhoneQuality.signals`,
lower-case quality and status, the tier as the spec writes it) next to the local meter's factors
(`warmup.services.readings`), so plans act on them (`quality: [yellow]`, `status: [flagged]`, `tier:
...`); Meta's quality webhooks update them during the day (`warmup.services.signals`). `health()` (the
doctor) judges them directly: GREEN ok, YELLOW throttle, RED or status FLAGGED/RESTRICTED/BANNED stop.
Inbound messages only arrive by webhook (`warmup.providers.webhooks.parse_cloud_webhook`); there is no
list endpoint, so `list_inbound` returns [].
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx

from warmup.core.domain import Reading
from warmup.providers.base import Health, Inbound, OutcomeAction, ProviderError, SendResult, worst
from warmup.providers.errors import (
    decode_json,
    describe_body,
    transport_rule,
)
from warmup.providers.http import HttpProvider
from warmup.secrets import Secret, clip

A = OutcomeAction
GRAPH_BASE_URL = "https://graph.facebook.com"
DEFAULT_VERSION = "v23.0"
MAX_TEXT_CHARS = 4096  # Meta's documented limit for a text body
LIMIT_FIELD = "messaging_limit_tier"  # the v23 spec's field (and later versions')
LEGACY_LIMIT_FIELD = "whatsapp_business_manager_messaging_limit"  # before v23.0 (specs/README.md)
FIRST_VERSION_WITH_LIMIT_TIER = (23, 0)
NO_METER = (
    "Cloud API has no risk meter: the reading is the local meter's factors with Meta's quality rating, "
    "status and messaging limit"
)

QUALITY_ACTIONS: dict[str, tuple[OutcomeAction, str]] = {
    "GREEN": (A.OK, "quality high"),
    "NA": (A.OK, "quality not rated yet"),
    "UNKNOWN": (A.OK, "quality not rated yet"),
    "YELLOW": (A.THROTTLE, "quality medium: slow down"),
    "RED": (A.STOP_NUMBER, "quality low: stop before the number is restricted"),
}
STATUS_ACTIONS: dict[str, tuple[OutcomeAction, str]] = {
    "CONNECTED": (A.OK, "connected"),
    "FLAGGED": (A.STOP_NUMBER, "number flagged for low quality"),
    "RESTRICTED": (A.STOP_NUMBER, "number restricted by its messaging limit"),
    "BANNED": (A.STOP_NUMBER, "number banned"),
    "DISCONNECTED": (A.STOP_NUMBER, "number disconnected"),
    "DELETED": (A.STOP_NUMBER, "number deleted"),
    "UNVERIFIED": (A.STOP_NUMBER, "number not verified"),
    "PENDING": (A.RETRY, "number registration pending"),
    "MIGRATED": (A.RETRY, "number being migrated"),
}
RATED: frozenset[str] = frozenset({"GREEN", "YELLOW", "RED"})
"""Quality ratings that are a rating (NA and UNKNOWN mean not rated yet: no signal)."""
_TEMPLATE_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
_VERSION = re.compile(r"v([0-9]{1,3})\.([0-9]{1,2})")
_STATUS_WORD = re.compile(r"[A-Z][A-Z_]{1,15}")
_TIER_WORD = re.compile(r"TIER_[0-9A-Z]{1,19}")


def cloud_recipient(to: str) -> str | None:
    """Digits of an E.164 number (Meta's `wa_id` form); None if it is not one."""
    digits = re.sub(r"[\s().-]", "", to).removeprefix("+")
    if digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15:
        return digits
    return None


def limit_field(version: str) -> str:
    """The phone number's messaging-limit field in Graph API ``version`` (`v23.0` and later:
    `messaging_limit_tier`; earlier: `whatsapp_business_manager_messaging_limit`)."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise ValueError(f"a Graph API version looks like v23.0, got {version[:20]!r}")
    major, minor = int(match.group(1)), int(match.group(2))
    return LIMIT_FIELD if (major, minor) >= FIRST_VERSION_WITH_LIMIT_TIER else LEGACY_LIMIT_FIELD


def signal_quality(rating: object) -> str | None:
    """A quality rating as a reading holds it: green | yellow | red; None when not rated (NA) or unknown."""
    word = rating.strip().upper() if isinstance(rating, str) else ""
    return word.lower() if word in RATED else None


def signal_status(status: object) -> str | None:
    """A number status as a reading holds it (lower case: connected, flagged, restricted, ...); None for
    anything that is not a status word (the old MESSAGING_LIMIT_TIER_n "statuses" are tiers)."""
    word = status.strip().upper() if isinstance(status, str) else ""
    if not _STATUS_WORD.fullmatch(word) or word.startswith("MESSAGING_LIMIT"):
        return None
    return word.lower()


def signal_tier(tier: object) -> str | None:
    """A messaging limit as a reading holds it (TIER_250, TIER_2K, ...); None for TIER_NOT_SET (the number
    never sent) and for anything that is not a tier."""
    word = tier.strip().upper() if isinstance(tier, str) else ""
    if not _TIER_WORD.fullmatch(word) or word == "TIER_NOT_SET":
        return None
    return word


@dataclass(frozen=True)
class PhoneQuality:
    """What Meta says about the sending number, as it says it."""

    quality_rating: str | None  # GREEN | YELLOW | RED | NA
    status: str | None  # CONNECTED | FLAGGED | RESTRICTED | ...
    messaging_limit: str | None  # e.g. TIER_1K

    def signals(self) -> dict[str, str | None]:
        """The reading's `quality`, `status` and `tier` (see `warmup.core.domain.SIGNALS`)."""
        return {
            "quality": signal_quality(self.quality_rating),
            "status": signal_status(self.status),
            "tier": signal_tier(self.messaging_limit),
        }


class CloudApiProvider(HttpProvider):
    """One Cloud API phone number. Thread-safe; one pooled HTTP client per instance."""

    kind = "cloud_api"

    def __init__(
        self,
        token: str | Secret,
        phone_number_id: str,
        base_url: str = GRAPH_BASE_URL,
        version: str = DEFAULT_VERSION,
        *,
        timeout: httpx.Timeout | float | None = None,
        source: str = "cloud_api",
    ) -> None:
        if not phone_number_id.isascii() or not phone_number_id.isdigit():
            raise ValueError("phone_number_id must be the numeric id Meta assigned to the number")
        self.limit_field = limit_field(version)  # ValueError for a version that is not vNN.N
        super().__init__(token, base_url, timeout)
        self.phone_number_id = phone_number_id
        self.version = version
        self.source = source
        self.last_reading_error: str | None = None

    def __repr__(self) -> str:
        return (
            f"CloudApiProvider(phone_number_id={self.phone_number_id!r}, base_url={self.base_url!r}, "
            f"version={self.version!r}, token={self._token!r})"
        )

    @property
    def messages_path(self) -> str:
        return f"/{self.version}/{self.phone_number_id}/messages"

    # --- send ---------------------------------------------------------------------------------------

    def build_text_body(self, to: str, body: str) -> dict[str, Any]:
        """The JSON of a text send (spec `TextMessage`); ValueError for a non-phone `to`."""
        if len(body) > MAX_TEXT_CHARS:
            raise TypeError(f"text longer than {MAX_TEXT_CHARS} characters")
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self._recipient(to),
            "type": "text",
            "text": {"body": body, "preview_url": False},
        }

    def build_template_body(
        self,
        to: str,
        name: str,
        language: str = "en_US",
        components: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The JSON of a template send (spec `TemplateMessage`)."""
        if not name or not _TEMPLATE_LANGUAGE.fullmatch(language):
            raise ValueError("template needs a name and a language code like en_US")
        # the spec's LanguageObject requires `policy` (only value: deterministic)
        template: dict[str, Any] = {"name": name, "language": {"policy": "deterministic", "code": language}}
        if components:
            template["components"] = [dict(c) for c in components]
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self._recipient(to),
            "type": "template",
            "template": template,
        }

    @staticmethod
    def _recipient(to: str) -> str:
        recipient = cloud_recipient(to)
        if recipient is None:
            raise ValueError("recipient is not a phone number with 7 to 15 digits")
        return recipient

    def send_text(self, to: str, body: str, typing_seconds: float = 0.0) -> SendResult:
        """Send one text; never raises. `typing_seconds` is ignored: the Cloud API only shows typing in
        reply to a received message, and the worker already waits between sends."""
        try:
            payload = self.build_text_body(to, body)
        except ValueError as exc:
            return SendResult(A.SKIP_RECIPIENT, None, self._reason(f"not sent: {exc}"))
        except TypeError as exc:
            return SendResult(A.FAIL, None, f"not sent: {exc}")
        return self._post_send(self.messages_path, payload, self._send_outcome)

    def send_template(
        self,
        to: str,
        name: str,
        language: str = "en_US",
        components: Sequence[Mapping[str, Any]] | None = None,
    ) -> SendResult:
        """Send an approved template (needed to open a conversation); never raises."""
        try:
            payload = self.build_template_body(to, name, language, components)
        except (ValueError, TypeError) as exc:
            recipient = isinstance(exc, ValueError) and "recipient" in str(exc)
            action = A.SKIP_RECIPIENT if recipient else A.FAIL
            return SendResult(action, None, self._reason(f"not sent: {exc}"))
        return self._post_send(self.messages_path, payload, self._send_outcome)  # components may not be JSON

    def _send_outcome(self, response: httpx.Response) -> SendResult:
        """A 2xx answer to a send: OK with the message id, UNKNOWN without one."""
        status = response.status_code
        data = decode_json(response.content)
        messages = data.get("messages") if isinstance(data, Mapping) else None
        first = messages[0] if isinstance(messages, list) and messages else None
        message_id = first.get("id") if isinstance(first, Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            detail = (
                describe_body(response.content, response.headers.get("content-type"), [self._token])
                if data is None
                else "no message id in the answer"
            )
            return SendResult(
                A.UNKNOWN,
                None,
                self._reason(f"HTTP {status} but {detail}: the message may have been sent"),
                http_status=status,
            )
        state = first.get("message_status") if isinstance(first, Mapping) else None
        reason = (
            "sent"
            if state in (None, "accepted")
            else f"accepted, message_status={clip(str(state), 40, [self._token])}"
        )
        return SendResult(A.OK, message_id, reason, http_status=status)

    # --- health and quality -------------------------------------------------------------------------

    def quality(self) -> PhoneQuality:
        """GET the number's quality rating, status and messaging limit (the version's field); raises
        `ProviderError`."""
        path = f"/{self.version}/{self.phone_number_id}"
        fields = f"quality_rating,status,{self.limit_field}"
        try:
            response = self._request("GET", path, params={"fields": fields})
        except Exception as exc:
            rule = transport_rule(exc)
            action = A.STOP_NUMBER if rule.action is A.STOP_NUMBER else A.RETRY
            raise ProviderError(action, self._reason(f"phone number info: {rule.meaning}")) from None
        status = response.status_code
        if not 200 <= status < 300:
            result = self._error_answer(response)
            action = A.STOP_NUMBER if result.action is A.STOP_NUMBER else A.RETRY
            raise ProviderError(action, f"phone number info: {result.reason}", status)
        data = decode_json(response.content)
        if not isinstance(data, Mapping):
            detail = describe_body(response.content, response.headers.get("content-type"), [self._token])
            raise ProviderError(A.RETRY, self._reason(f"phone number info: {detail}"), status)

        def text(key: str) -> str | None:
            value = data.get(key)
            return value.strip().upper() if isinstance(value, str) and value.strip() else None

        # the field asked for; the other one too, should a server answer with it regardless
        other = LEGACY_LIMIT_FIELD if self.limit_field == LIMIT_FIELD else LIMIT_FIELD
        limit = data.get(self.limit_field, data.get(other))
        if isinstance(limit, Mapping):  # tolerate an object form, e.g. {"current_limit": "TIER_1K"}
            limit = next((v for v in limit.values() if isinstance(v, str)), None)
        return PhoneQuality(
            quality_rating=text("quality_rating"),
            status=text("status"),
            messaging_limit=limit.strip().upper() if isinstance(limit, str) and limit.strip() else None,
        )

    def health(self) -> Health:
        """Worst of quality (GREEN ok, YELLOW throttle, RED stop) and status (FLAGGED etc. stop)."""
        try:
            info = self.quality()
        except ProviderError as exc:
            return Health(
                exc.action,
                "unreachable" if exc.http_status is None else f"HTTP {exc.http_status}",
                exc.reason,
            )
        parts: list[tuple[OutcomeAction, str]] = []
        if info.quality_rating is not None:
            parts.append(QUALITY_ACTIONS.get(info.quality_rating, (A.RETRY, "unrecognised quality rating")))
        if info.status is not None:
            parts.append(STATUS_ACTIONS.get(info.status, (A.RETRY, "unrecognised number status")))
        if not parts:
            return Health(A.RETRY, "unreadable", "the answer had neither quality_rating nor status")
        action = worst(*(a for a, _ in parts))
        words = "/".join(w for w in (info.status, info.quality_rating, info.messaging_limit) if w)
        reason = "; ".join(meaning for a, meaning in parts if a is action)
        return Health(action, words, reason)

    # --- readings and inbound -----------------------------------------------------------------------

    def fetch_reading(self, today: date) -> Reading | None:
        """Always None: the Cloud API has no risk meter (see module doc); reason in last_reading_error.
        The day's reading is the local meter's factors with `quality().signals()`."""
        self.last_reading_error = NO_METER
        return None

    def list_inbound(self, since: datetime) -> list[Inbound]:
        """Always []: Cloud API replies arrive only by webhook (`parse_cloud_webhook`)."""
        return []
