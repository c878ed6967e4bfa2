"""Admin chat commands: an admin of the fleet file writes `/pause [reason]`, `/resume`, `/status` or `/why`
to any fleet number, and that number answers.

Only the phones listed under `admins:` in the last applied fleet file
(`warmup.services.fleet.current_admins`) are
obeyed. A command-looking message from anyone else changes nothing, gets no answer, and leaves a
`chat_command_refused` audit row (ordinary messages are not logged: they are warm-up replies).

Answers are operational traffic, not warm-up traffic: they are sent straight through the number's
provider, outside the day's quota and the send windows (an admin asking `/why` at night gets an
answer), and are recorded in the audit log rather than as outbound messages. They only ever go to the
admin who asked.

Call `process_inbound` once per NEWLY stored inbound message (the new messages
`warmup.services.replies.store_events` returns; the webhook app and
`warmup.services.replies.ingest_replies` both do), so a redelivered event never runs a command twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from warmup.providers.base import Inbound, Provider
from warmup.services import admin
from warmup.services.fleet import current_admins
from warmup.store import audit, numbers
from warmup.store.db import Engine

log = logging.getLogger(__name__)

MAX_ANSWER = 1500
"""Characters; WhatsApp allows 4096, a phone screen shows far less."""

HELP = (
    "Commands: /pause [reason] stops this number now; /resume starts it again gradually; "
    "/status shows today's numbers; /why explains today's quota."
)


def parse_command(text: str | None) -> tuple[str, str] | None:
    """(`pause`, `the reason`) for `/pause the reason`; None when the text is not a command."""
    if not text:
        return None
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2:
        return None
    word, _, rest = stripped[1:].partition(" ")
    return word.lower(), rest.strip()


def handle_inbound(engine: Engine, number_id: int, inbound: Inbound, now: datetime) -> str | None:
    """Run the command in `inbound` if an admin sent it; the answer text, or None (no answer at all)."""
    if inbound.kind != "message" or inbound.from_me:
        return None
    command = parse_command(inbound.text)
    if command is None:
        return None
    name, args = command
    sender = inbound.chat_phone
    number = numbers.get_number(engine, number_id)
    if number is None:
        return None
    if sender is None or sender not in current_admins(engine):
        audit.audit(
            engine,
            f"chat:{sender or 'unknown'}",
            "chat_command_refused",
            number_id,
            {"command": name[:32], "reason": "sender is not an admin of the fleet file"},
            now,
        )
        log.warning(
            "number %s (%s): ignored a chat command from non-admin %s", number_id, number.phone, sender
        )
        return None
    actor = f"chat:{sender}"
    audit.audit(engine, actor, "chat_command", number_id, {"command": name[:32], "args": args[:200]}, now)
    target = admin.Target(phone=number.phone)
    if name == "pause":
        outcome = admin.pause(engine, target, reason=args or "paused by chat command", actor=actor, now=now)
        if outcome.changed:
            return f"{number.phone} paused: no new message goes out. Send /resume to start again."
        return f"{number.phone} was not paused: it is {number.state}."
    if name == "resume":
        outcome = admin.resume(engine, target, actor=actor, now=now, reason=args or None)
        if outcome.changed:
            return f"{number.phone} resumed: it re-enters gradually and spreads the rest of today."
        return f"{number.phone} was not resumed: it is {number.state}."
    if name == "status":
        return _status_line(engine, number_id, now)
    if name == "why":
        lines = admin.explain(engine, number.phone, now).lines()
        return _clip("\n".join(lines))
    return HELP


def _status_line(engine: Engine, number_id: int, now: datetime) -> str:
    rows = [row for row in admin.status(engine, now, include_retired=True) if row.number_id == number_id]
    if not rows:
        return "unknown number"
    row = rows[0]
    quota = "not planned yet" if row.quota is None else f"{row.sent}/{row.quota} sent"
    return _clip(
        f"{row.phone}: {admin.describe_state(row)}; plan {row.plan} day {row.plan_day}; "
        f"today ({row.local_date}) {quota}, {row.replies} replies; "
        f"reading {admin.describe_reading(row.reading)}"
    )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ANSWER else text[: MAX_ANSWER - 1] + "…"


def process_inbound(
    engine: Engine,
    number_id: int,
    inbound: Inbound,
    now: datetime,
    provider_for: Callable[[int], Provider],
) -> str | None:
    """`handle_inbound`, then send its answer back to the admin through the number's provider.

    Returns the answer (None when there was none). A send failure is audited, never raised: the command
    itself has already taken effect.
    """
    answer = handle_inbound(engine, number_id, inbound, now)
    to = inbound.chat_phone
    if answer is None or to is None or to not in current_admins(engine):
        return None
    try:
        result = provider_for(number_id).send_text(to, answer)
        detail: dict[str, object] = {"to": to, "sent": result.sent, "reason": result.reason[:200]}
    except Exception as exc:  # no token, bad URL: the admin sees the effect in `warmup status`
        detail = {"to": to, "sent": False, "reason": f"{type(exc).__name__}"}
    audit.audit(engine, "chat", "chat_answer", number_id, detail, now)
    return answer
