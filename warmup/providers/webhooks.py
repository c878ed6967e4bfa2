"""Webhook payloads (Whapi and Cloud API) into `Inbound` events, and the Cloud API signature check.

The rule for bad input: a payload whose envelope or one of whose relevant items is malformed is
rejected WHOLE with `WebhookError` (the caller answers 400 and records nothing — docs/design.md, invariant 6);
items that are well-formed but irrelevant (group chats, event types we do not track, system messages)
are skipped silently. Nothing here raises anything but `WebhookError` on any input.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from warmup.providers.base import Inbound
from warmup.secrets import Secret

MAX_WEBHOOK_BYTES = 1024 * 1024  # both APIs send small batches; anything bigger is not theirs
_MAX_TIMESTAMP = 10**11  # ~ year 5138; rejects millisecond stamps and garbage
_NON_PHONE_SUFFIXES = ("@g.us", "@newsletter", "@broadcast", "@lid", "@call")


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
    return value


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
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _required_str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise WebhookError(f"{where}: '{key}' must be a non-empty string, got {_short(value)}")
    return value


def _optional_str(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) and value else None


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
        parts.append(title[:200])
    text = ": ".join(p for p in parts if p)
    return text or None


# --- Whapi -----------------------------------------------------------------------------------------


def whapi_message(item: Any, where: str = "message") -> Inbound | None:
    """One Whapi `Message` object as an Inbound; None for chats that are not a phone (groups, channels)."""
    obj = _item(item, where)
    message_id = _required_str(obj, "id", where)
    chat_id = _required_str(obj, "chat_id", where)
    from_me = obj.get("from_me", False)
    if not isinstance(from_me, bool):
        raise WebhookError(f"{where}: 'from_me' must be a boolean, got {_short(from_me)}")
    timestamp = parse_timestamp(obj.get("timestamp"), where)
    phone = phone_from_chat_id(chat_id)
    if phone is None:
        return None
    text_obj = _mapping(obj.get("text"))
    text = text_obj.get("body") if text_obj is not None else None
    context = _mapping(obj.get("context"))
    return Inbound(
        kind="message",
        provider_message_id=message_id,
        chat_phone=phone,
        from_me=from_me,
        text=text if isinstance(text, str) else None,
        timestamp=timestamp,
        status=_optional_str(obj, "status"),
        ref_message_id=_optional_str(context, "quoted_id") if context is not None else None,
    )


def status_event(item: Any, where: str = "status") -> Inbound:
    """One status (sent, delivered, read, failed) of one of our messages as an Inbound of kind `status`:
    a Whapi `Status` and a Cloud API status have the same fields (id, recipient_id, timestamp, status,
    errors)."""
    obj = _item(item, where)
    return Inbound(
        kind="status",
        provider_message_id=_required_str(obj, "id", where),
        chat_phone=phone_from_chat_id(obj.get("recipient_id")),
        from_me=True,
        text=None,
        timestamp=parse_timestamp(obj.get("timestamp"), where),
        status=_required_str(obj, "status", where),
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
    message_id = _required_str(obj, "id", where)
    timestamp = parse_timestamp(obj.get("timestamp"), where)
    kind = obj.get("type")
    if kind == "system":
        return None
    sender = _required_str(obj, "from", where)
    text_obj = _mapping(obj.get("text"))
    text = text_obj.get("body") if text_obj is not None and kind in ("text", None) else None
    context = _mapping(obj.get("context"))
    return Inbound(
        kind="message",
        provider_message_id=message_id,
        chat_phone=phone_from_chat_id(sender),
        from_me=False,
        text=text if isinstance(text, str) else None,
        timestamp=timestamp,
        ref_message_id=_optional_str(context, "id") if context is not None else None,
    )


def parse_cloud_webhook(
    raw: bytes | str | Mapping[str, Any], max_bytes: int = MAX_WEBHOOK_BYTES
) -> list[Inbound]:
    """Events of a Cloud API webhook: entry[].changes[] with field `messages` (others are ignored).

    Verify the signature (`verify_cloud_signature`) on the RAW body before calling this.
    """
    payload = load_payload(raw, max_bytes)
    if payload.get("object") != "whatsapp_business_account":
        raise WebhookError(f"not a WhatsApp Business webhook: object={_short(payload.get('object'))}")
    events: list[Inbound] = []
    for e, entry_value in enumerate(_items(payload, "entry", "cloud webhook")):
        entry = _item(entry_value, f"entry[{e}]")
        for c, change_value in enumerate(_items(entry, "changes", f"entry[{e}]")):
            where = f"entry[{e}].changes[{c}]"
            change = _item(change_value, where)
            if change.get("field") != "messages":
                continue
            value = _item(change.get("value"), f"{where}.value")
            for i, item in enumerate(_items(value, "messages", f"{where}.value")):
                inbound = cloud_message(item, f"{where}.value.messages[{i}]")
                if inbound is not None:
                    events.append(inbound)
            for i, item in enumerate(_items(value, "statuses", f"{where}.value")):
                events.append(status_event(item, f"{where}.value.statuses[{i}]"))
    return events
