"""Webhook payloads (Whapi and Cloud API) into `Inbound` events and Meta's account events
(`CloudSignal`: quality, status, messaging limits, alerts), and the Cloud API signature check.

The rule for bad input: a payload whose envelope or one of whose relevant items is malformed is
rejected WHOLE with `WebhookError` (the caller answers 400 and records nothing — docs/design.md, invariant 6);
items that are well-formed but irrelevant (group chats, event types we do not track, system messages)
are skipped silently. Nothing here raises anything but `WebhookError` on any input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from warmup.providers.base import Inbound
from warmup.providers.cloud_api import signal_tier
from warmup.secrets import Secret, clip

MAX_WEBHOOK_BYTES = 1024 * 1024  # both APIs send small batches; anything bigger is not theirs
MAX_DEPTH = 32  # JSON nesting; both APIs' payloads nest under 10 levels
_MAX_TIMESTAMP = 10**11  # ~ year 5138; rejects millisecond stamps and garbage
_NON_PHONE_SUFFIXES = ("@g.us", "@newsletter", "@broadcast", "@lid", "@call")
MAX_ID = 128  # a message id (ours is `inbound_messages.provider_message_id`; Meta's wamid is ~60)
MAX_STATUS = 32  # a status word (sent, delivered, read, played, failed, ...)
_NOT_IN_ID = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class WebhookError(ValueError):
    """A webhook body that is not a valid payload of the expected API; nothing was recorded."""


def load_payload(
    raw: bytes | str | Mapping[str, Any], max_bytes: int = MAX_WEBHOOK_BYTES
) -> Mapping[str, Any]:
    """The decoded JSON object of a webhook body; `WebhookError` if oversized, not JSON or not an object."""
    if isinstance(raw, Mapping):
        return raw
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    if not isinstance(data, bytes | bytearray):
        raise WebhookError(f"webhook body must be bytes, got {type(raw).__name__}")
    if len(data) > max_bytes:
        raise WebhookError(f"webhook body too large: {len(data)} bytes (limit {max_bytes})")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise WebhookError(f"webhook body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(value, Mapping):
        raise WebhookError(f"webhook body must be a JSON object, got {type(value).__name__}")
    if _depth_over(value, MAX_DEPTH):
        raise WebhookError(f"webhook body is nested deeper than {MAX_DEPTH} levels")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether JSON containers nest deeper than ``limit`` (walked without recursion). `json.loads` takes
    nesting up to Python's recursion limit, and anything recursive on such a value later (a `repr` in
    an error message, a `json.dumps` into the audit log) would raise RecursionError: a 5xx."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def verify_cloud_signature(raw_body: bytes, signature_header: str | None, app_secret: str | Secret) -> None:
    """Check Meta's `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256 of the raw body, app secret as key).

    Constant-time comparison; raises `WebhookError` when missing, malformed or wrong.
    """
    if not signature_header:
        raise WebhookError("missing X-Hub-Signature-256 header")
    scheme, _, given = signature_header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        raise WebhookError("malformed X-Hub-Signature-256 header (expected sha256=<hex>)")
    secret = app_secret.reveal() if isinstance(app_secret, Secret) else app_secret
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode("ascii", "replace")):
        raise WebhookError("X-Hub-Signature-256 does not match the body")


def phone_from_chat_id(value: Any) -> str | None:
    """E.164 (`+5511...`) from a WhatsApp id (`5511...@s.whatsapp.net`, `5511...`); None for groups etc."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if any(text.endswith(s) for s in _NON_PHONE_SUFFIXES):
        return None
    digits = text.split("@", 1)[0].lstrip("+")
    if digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15:
        return "+" + digits
    return None


def parse_timestamp(value: Any, where: str) -> datetime:
    """Aware UTC datetime from unix seconds given as int, float or digit string."""
    seconds: float
    if isinstance(value, bool):
        raise WebhookError(f"{where}: timestamp must be unix seconds, got a boolean")
    if isinstance(value, int) and not 0 <= value < _MAX_TIMESTAMP:
        raise WebhookError(f"{where}: timestamp out of range: {_short(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _digits(value, 12):
        seconds = float(int(value.strip()))
    else:
        raise WebhookError(f"{where}: timestamp must be unix seconds, got {_short(value)}")
    if not math.isfinite(seconds) or not 0 <= seconds < _MAX_TIMESTAMP:
        raise WebhookError(f"{where}: timestamp out of range: {_short(value)}")
    return datetime.fromtimestamp(seconds, UTC)


def _digits(value: str, max_len: int) -> bool:
    """ASCII digits only and short (int() refuses very long digit strings with ValueError)."""
    text = value.strip()
    return 0 < len(text) <= max_len and text.isascii() and text.isdigit()


def _short(value: Any) -> str:
    return clip(repr(value), 40)


def _required_str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise WebhookError(f"{where}: '{key}' must be a non-empty string, got {_short(value)}")
    return value


def _optional_str(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) and value else None


def _id(value: str, where: str, key: str, limit: int = MAX_ID) -> str:
    """An identifier or status word as given, refused when no provider sends it so (control
    characters, lone surrogates, longer than the store keeps): the whole payload is then refused."""
    if len(value) > limit or _NOT_IN_ID.search(value):
        raise WebhookError(f"{where}: '{key}' is not a printable id of at most {limit} characters")
    return value


def _required_id(item: Mapping[str, Any], key: str, where: str, limit: int = MAX_ID) -> str:
    return _id(_required_str(item, key, where), where, key, limit)


def _optional_id(item: Mapping[str, Any] | None, key: str, where: str, limit: int = MAX_ID) -> str | None:
    value = _optional_str(item, key) if item is not None else None
    return None if value is None else _id(value, where, key, limit)


def clean_text(value: str) -> str:
    """A text people wrote, storable: NUL, other control characters (but tab and line breaks) and lone
    surrogates become U+FFFD. Texts are sanitized rather than refused: one odd reply must not cost the
    batch it came in (and the admin command of another message in it)."""
    return _NOT_IN_TEXT.sub("\ufffd", value)


def _text(obj: Mapping[str, Any], where: str) -> str | None:
    """The `text.body` of a message (None when it has no text); a `text` or `body` of another type is
    not a message of the API."""
    text_obj = obj.get("text")
    if text_obj is None:
        return None
    if not isinstance(text_obj, Mapping):
        raise WebhookError(f"{where}: 'text' must be an object, got {type(text_obj).__name__}")
    body = text_obj.get("body")
    if body is None:
        return None
    if not isinstance(body, str):
        raise WebhookError(f"{where}: 'text.body' must be a string, got {type(body).__name__}")
    return clean_text(body)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _items(payload: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookError(f"{where}: '{key}' must be a list, got {type(value).__name__}")
    return value


def _item(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WebhookError(f"{where}: must be an object, got {type(value).__name__}")
    return value


def _first_error(errors: Any) -> str | None:
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], Mapping):
        return None
    first = errors[0]
    code = first.get("code")
    title = first.get("title") or first.get("message")
    parts = [str(code) if isinstance(code, int | str) and not isinstance(code, bool) else ""]
    if isinstance(title, str):
        parts.append(clean_text(clip(title, 200)))
    text = ": ".join(p for p in parts if p)
    return text or None


# --- Whapi -----------------------------------------------------------------------------------------


def whapi_message(item: Any, where: str = "message") -> Inbound | None:
    """One Whapi `Message` object as an Inbound; None for chats that are not a phone (groups, channels)."""
    obj = _item(item, where)
    message_id = _required_id(obj, "id", where)
    chat_id = _required_str(obj, "chat_id", where)
    from_me = obj.get("from_me", False)
    if not isinstance(from_me, bool):
        raise WebhookError(f"{where}: 'from_me' must be a boolean, got {_short(from_me)}")
    timestamp = parse_timestamp(obj.get("timestamp"), where)
    text = _text(obj, where)
    status = _optional_id(obj, "status", where, MAX_STATUS)
    context = _mapping(obj.get("context"))
    quoted = _optional_id(context, "quoted_id", f"{where}.context")
    phone = phone_from_chat_id(chat_id)
    if phone is None:
        return None
    return Inbound(
        kind="message",
        provider_message_id=message_id,
        chat_phone=phone,
        from_me=from_me,
        text=text,
        timestamp=timestamp,
        status=status,
        ref_message_id=quoted,
    )


def status_event(item: Any, where: str = "status") -> Inbound:
    """One status (sent, delivered, read, failed) of one of our messages as an Inbound of kind `status`:
    a Whapi `Status` and a Cloud API status have the same fields (id, recipient_id, timestamp, status,
    errors)."""
    obj = _item(item, where)
    return Inbound(
        kind="status",
        provider_message_id=_required_id(obj, "id", where),
        chat_phone=phone_from_chat_id(obj.get("recipient_id")),
        from_me=True,
        text=None,
        timestamp=parse_timestamp(obj.get("timestamp"), where),
        status=_required_id(obj, "status", where, MAX_STATUS),
        error=_first_error(obj.get("errors")),
    )


def parse_whapi_webhook(
    raw: bytes | str | Mapping[str, Any], max_bytes: int = MAX_WEBHOOK_BYTES
) -> list[Inbound]:
    """Events of a Whapi webhook (`messages` and `statuses` arrays; other arrays are ignored)."""
    payload = load_payload(raw, max_bytes)
    events: list[Inbound] = []
    for i, item in enumerate(_items(payload, "messages", "whapi webhook")):
        inbound = whapi_message(item, f"messages[{i}]")
        if inbound is not None:
            events.append(inbound)
    for i, item in enumerate(_items(payload, "statuses", "whapi webhook")):
        events.append(status_event(item, f"statuses[{i}]"))
    return events


# --- Cloud API -------------------------------------------------------------------------------------


def cloud_message(item: Any, where: str = "message") -> Inbound | None:
    """One Cloud API incoming message as an Inbound; None for `system` messages (number changes)."""
    obj = _item(item, where)
    message_id = _required_id(obj, "id", where)
    timestamp = parse_timestamp(obj.get("timestamp"), where)
    kind = obj.get("type")
    if kind == "system":
        return None
    sender = _required_str(obj, "from", where)
    text = _text(obj, where) if kind in ("text", None) else None
    context = _mapping(obj.get("context"))
    return Inbound(
        kind="message",
        provider_message_id=message_id,
        chat_phone=phone_from_chat_id(sender),
        from_me=False,
        text=text,
        timestamp=timestamp,
        ref_message_id=_optional_id(context, "id", f"{where}.context"),
    )


# --- Cloud API account events (quality, messaging limits, alerts) ----------------------------------

QUALITY_FIELD = "phone_number_quality_update"
CAPABILITY_FIELD = "business_capability_update"
ALERTS_FIELD = "account_alerts"
SIGNAL_FIELDS = (QUALITY_FIELD, CAPABILITY_FIELD, ALERTS_FIELD)
"""The `changes[].field` values of Meta's account events that `parse_cloud_payload` reads."""

QUALITY_EVENT_STATUS: dict[str, str] = {"FLAGGED": "flagged", "UNFLAGGED": "connected"}
"""The legacy `phone_number_quality_update` events that say what the number's status is now (UPGRADE and
DOWNGRADE, like the current ONBOARDING and THROUGHPUT_UPGRADE, only move its messaging limit)."""

LIMIT_NUMBERS: dict[int, str] = {
    50: "TIER_50",
    250: "TIER_250",
    1000: "TIER_1K",
    2000: "TIER_2K",
    10000: "TIER_10K",
    100000: "TIER_100K",
    -1: "TIER_UNLIMITED",
}
"""A messaging limit given as a number (`business_capability_update`; -1 is unlimited) as a tier."""

_WORD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


@dataclass(frozen=True)
class CloudSignal:
    """One Meta account event: what it says about a number's quality, status or messaging limit
    (`changes`, named as readings name them), and what identifies whom it is about."""

    field: str  # phone_number_quality_update | business_capability_update | account_alerts
    event: str | None  # FLAGGED, UNFLAGGED, UPGRADE, DOWNGRADE, ONBOARDING, ...; an alert's type
    waba_id: str  # entry[].id: the WhatsApp Business Account
    phone: str | None = None  # the number in E.164 (`display_phone_number`)
    phone_number_id: str | None = None  # an alert about a PHONE_NUMBER entity
    business_id: str | None = None  # an alert about a BUSINESS (portfolio) entity
    # quality | status | tier -> the new value
    changes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    detail: Mapping[str, str] = dataclasses.field(default_factory=dict)  # what it said, for the audit log
    at: datetime | None = None  # entry[].time: when Meta triggered it


@dataclass(frozen=True)
class CloudEvents:
    """Everything a Cloud API webhook carries that we use."""

    inbound: list[Inbound]  # messages and statuses (field `messages`)
    signals: list[CloudSignal]  # account events (`SIGNAL_FIELDS`)


def _word(value: Any, where: str, key: str, *, required: bool = True) -> str | None:
    """An upper-case enum word (`FLAGGED`, `TIER_2K`, `PHONE_NUMBER`); `WebhookError` if not one."""
    if value is None and not required:
        return None
    text = value.strip().upper() if isinstance(value, str) else None
    if text is None or not _WORD.fullmatch(text):
        raise WebhookError(f"{where}: '{key}' must be an upper-case word, got {_short(value)}")
    return text


def _limit(value: Any, where: str, key: str) -> str | None:
    """A messaging limit given as a tier word or a number of recipients; None when absent or not set."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in LIMIT_NUMBERS:
            raise WebhookError(f"{where}: '{key}' is not a messaging limit: {_short(value)}")
        return LIMIT_NUMBERS[value]
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,7}", value.strip()):
        return _limit(int(value.strip()), where, key)
    word = _word(value, where, key)
    if word is None or not word.startswith("TIER_"):
        raise WebhookError(f"{where}: '{key}' is not a messaging limit: {_short(value)}")
    return signal_tier(word)


def _entry_time(entry: Mapping[str, Any], where: str) -> datetime | None:
    return None if entry.get("time") is None else parse_timestamp(entry.get("time"), f"{where}.time")


def quality_update(value: Any, waba_id: str, at: datetime | None, where: str) -> CloudSignal:
    """A `phone_number_quality_update`: `display_phone_number` and `event` required; `current_limit`,
    `old_limit` and `max_daily_conversations_per_business` (the portfolio's limit) when Meta gives them."""
    obj = _item(value, where)
    display = _required_str(obj, "display_phone_number", where)
    digits = re.sub(r"[\s().+-]", "", display)
    if not (digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15):
        raise WebhookError(f"{where}: 'display_phone_number' is not a phone number: {_short(display)}")
    event = _word(obj.get("event"), where, "event")
    assert event is not None
    current = _limit(obj.get("current_limit"), where, "current_limit")
    business = _limit(
        obj.get("max_daily_conversations_per_business"), where, "max_daily_conversations_per_business"
    )
    old = _limit(obj.get("old_limit"), where, "old_limit")
    changes: dict[str, str] = {}
    if event in QUALITY_EVENT_STATUS:
        changes["status"] = QUALITY_EVENT_STATUS[event]
    tier = current or business
    if tier is not None:
        changes["tier"] = tier
    detail = {
        "event": event,
        "old_limit": old or "",
        "current_limit": current or "",
        "business_limit": business or "",
    }
    return CloudSignal(
        QUALITY_FIELD,
        event,
        waba_id,
        phone="+" + digits,
        changes=changes,
        detail={k: v for k, v in detail.items() if v},
        at=at,
    )


def capability_update(value: Any, waba_id: str, at: datetime | None, where: str) -> CloudSignal:
    """A `business_capability_update` of the account (`entry[].id`): its messaging limit
    (`max_daily_conversations_per_business`, else the older `max_daily_conversation_per_phone`)."""
    obj = _item(value, where)
    business = _limit(
        obj.get("max_daily_conversations_per_business"), where, "max_daily_conversations_per_business"
    )
    per_phone = _limit(obj.get("max_daily_conversation_per_phone"), where, "max_daily_conversation_per_phone")
    for key in ("max_phone_numbers_per_business", "max_phone_numbers_per_waba"):
        count = obj.get(key)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise WebhookError(f"{where}: '{key}' must be a whole number, got {_short(count)}")
    tier = business or per_phone
    detail = {"limit": tier or ""}
    return CloudSignal(
        CAPABILITY_FIELD,
        None,
        waba_id,
        changes={"tier": tier} if tier else {},
        detail={k: v for k, v in detail.items() if v},
        at=at,
    )


def account_alert(value: Any, waba_id: str, at: datetime | None, where: str) -> CloudSignal:
    """An `account_alerts` change: `entity_type`, `entity_id` and `alert_info.alert_type` required. It says
    nothing about quality, status or tier (limit increases denied or deferred, OBA decisions, a lost
    profile photo), so it only goes to the audit log of the numbers it is about."""
    obj = _item(value, where)
    entity_type = _word(obj.get("entity_type"), where, "entity_type")
    entity_id = _required_str(obj, "entity_id", where).strip()
    if not _digits(entity_id, 32):
        raise WebhookError(f"{where}: 'entity_id' must be a numeric id, got {_short(entity_id)}")
    info = _item(obj.get("alert_info"), f"{where}.alert_info")
    alert_type = _word(info.get("alert_type"), f"{where}.alert_info", "alert_type")
    severity = _word(info.get("alert_severity"), f"{where}.alert_info", "alert_severity", required=False)
    status = _word(info.get("alert_status"), f"{where}.alert_info", "alert_status", required=False)
    description = info.get("alert_description")
    if description is not None and not isinstance(description, str):
        raise WebhookError(
            f"{where}.alert_info: 'alert_description' must be a string, got {_short(description)}"
        )
    detail = {
        "entity": f"{entity_type} {entity_id}",
        "alert": alert_type or "",
        "severity": severity or "",
        "status": status or "",
        "description": clean_text(clip((description or "").strip(), 200)),
    }
    return CloudSignal(
        ALERTS_FIELD,
        alert_type,
        waba_id,
        phone_number_id=entity_id if entity_type == "PHONE_NUMBER" else None,
        business_id=entity_id if entity_type == "BUSINESS" else None,
        detail={k: v for k, v in detail.items() if v},
        at=at,
    )


_SIGNAL_PARSERS = {
    QUALITY_FIELD: quality_update,
    CAPABILITY_FIELD: capability_update,
    ALERTS_FIELD: account_alert,
}


def parse_cloud_payload(
    raw: bytes | str | Mapping[str, Any], max_bytes: int = MAX_WEBHOOK_BYTES
) -> CloudEvents:
    """Everything we use of a Cloud API webhook: entry[].changes[] with field `messages` (messages and
    statuses) and the account events of `SIGNAL_FIELDS`; other fields are ignored. One malformed change
    of these rejects the whole payload (`WebhookError`).

    Verify the signature (`verify_cloud_signature`) on the RAW body before calling this.
    """
    payload = load_payload(raw, max_bytes)
    if payload.get("object") != "whatsapp_business_account":
        raise WebhookError(f"not a WhatsApp Business webhook: object={_short(payload.get('object'))}")
    events: list[Inbound] = []
    signals: list[CloudSignal] = []
    for e, entry_value in enumerate(_items(payload, "entry", "cloud webhook")):
        entry = _item(entry_value, f"entry[{e}]")
        for c, change_value in enumerate(_items(entry, "changes", f"entry[{e}]")):
            where = f"entry[{e}].changes[{c}]"
            change = _item(change_value, where)
            kind = change.get("field")
            if isinstance(kind, str) and kind in _SIGNAL_PARSERS:
                waba_id = _required_id(entry, "id", f"entry[{e}]").strip()
                parse = _SIGNAL_PARSERS[kind]
                signals.append(
                    parse(change.get("value"), waba_id, _entry_time(entry, f"entry[{e}]"), f"{where}.value")
                )
                continue
            if kind != "messages":
                continue
            value = _item(change.get("value"), f"{where}.value")
            for i, item in enumerate(_items(value, "messages", f"{where}.value")):
                inbound = cloud_message(item, f"{where}.value.messages[{i}]")
                if inbound is not None:
                    events.append(inbound)
            for i, item in enumerate(_items(value, "statuses", f"{where}.value")):
                events.append(status_event(item, f"{where}.value.statuses[{i}]"))
    return CloudEvents(events, signals)


def parse_cloud_webhook(
    raw: bytes | str | Mapping[str, Any], max_bytes: int = MAX_WEBHOOK_BYTES
) -> list[Inbound]:
    """The messages and statuses of a Cloud API webhook (`parse_cloud_payload`, which validates the
    account events too).

    Verify the signature (`verify_cloud_signature`) on the RAW body before calling this.
    """
    return parse_cloud_payload(raw, max_bytes).inbound
