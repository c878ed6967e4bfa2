"""Meta's 24 h customer-service window: what a Cloud API message goes out as.

Over the Cloud API free-form text reaches a person only within 24 hours of their last message to the
number; outside that window only an approved template does (Meta error 131047 otherwise). A message
to someone inside their window is sent as its text; outside it, as one of the templates the plan's
message pool names (`warmup.files.content.Template`), filled with the recipient's first name; with no
template it is skipped with cause `SkipCause.NO_TEMPLATE`. A text refused with 131047 (the window
closed, or opened on a phone we never heard from) is sent once more as a template, in the same claim:
the refusal proves the text did not go out. The claim counted no portfolio slot for a recipient it saw
inside the window, so that template, or one sent after the window closed since the claim, first takes
one (`warmup.store.portfolios.count_late`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warmup.clock import Clock
from warmup.core.domain import SkipCause
from warmup.core.localtime import zone
from warmup.files.content import template_components
from warmup.providers.base import SendResult
from warmup.providers.cloud_api import CloudApiProvider
from warmup.services.peers import PlanFor
from warmup.services.texts import FIRST_NAMES, pool_of
from warmup.store import claims as store_claims
from warmup.store import inbound, numbers, outcomes, portfolios
from warmup.store.db import Engine

log = logging.getLogger(__name__)

SERVICE_WINDOW = timedelta(hours=24)
"""How long after a person's last message free-form text may reach them (Meta's customer-service window)."""

WINDOW_CLOSED = "131047"
"""Meta's error code for free-form text outside the customer-service window."""


@dataclass(frozen=True)
class NotSent:
    """The message cannot go out: its recipient is outside the window and the pool names no template
    (`SkipCause.NO_TEMPLATE`), or Meta refused the text as outside the window and the number's portfolio
    has no slot left for the template (`SkipCause.PORTFOLIO`)."""

    reason: str
    cause: SkipCause


def in_window(last_message: datetime | None, now: datetime) -> bool:
    """Whether free-form text may reach someone who last wrote at ``last_message`` (None: never)."""
    return last_message is not None and now - last_message < SERVICE_WINDOW


def send_cloud(
    engine: Engine,
    message: store_claims.ClaimedMessage,
    provider: CloudApiProvider,
    clock: Clock,
    plans: PlanFor | None,
) -> SendResult | NotSent:
    """Send a claimed message over the Cloud API as text inside the recipient's window, else as a
    template (noted on the message); `NotSent` when neither can go out."""
    now = clock.now()
    last = inbound.last_message_from(engine, message.number_id, message.recipient)
    refused = False
    if in_window(last, now):
        result = provider.send_text(message.recipient, message.text, typing_seconds=message.typing_seconds)
        if result.code != WINDOW_CLOSED:
            return result
        refused = True
        log.info("message %s: text refused outside the 24 h window (131047); trying a template", message.id)
    template = template_for(engine, message, plans, now)
    if template is None:
        when = "never wrote to this number" if last is None else f"last wrote {last:%Y-%m-%d %H:%M} UTC"
        if refused:
            when += ", but Meta answered 131047"
        return NotSent(
            f"outside the 24 h customer-service window (the recipient {when}) and the plan's message "
            "pool names no approved template",
            SkipCause.NO_TEMPLATE,
        )
    # the claim did not count a recipient it saw inside the window (who has written, then): Meta refused
    # the text, or the window closed since the claim; the template must take a slot now (a no-op when
    # the claim counted it)
    if last is not None and not portfolios.count_late(
        engine, message.number_id, message.id, message.recipient, now
    ):
        said = "Meta answered 131047 (outside the 24 h window)" if refused else "the 24 h window has closed"
        return NotSent(
            f"{said} and the number's portfolio has no slot left in the moving 24 h for a template to a "
            "new recipient",
            SkipCause.PORTFOLIO,
        )
    result = provider.send_template(
        message.recipient, template["name"], template["language"], template_components(template["parameters"])
    )
    if result.provider_message_id is not None:
        outcomes.note_template(engine, message.id, template)
    return result


def template_for(
    engine: Engine, message: store_claims.ClaimedMessage, plans: PlanFor | None, now: datetime
) -> dict[str, Any] | None:
    """A template of the number's plan pool filled for the recipient, or None (no plan, no template)."""
    if plans is None:
        return None
    number = numbers.get_number(engine, message.number_id)
    if number is None:
        return None
    try:
        plan = plans(number.plan_path)
        pool = pool_of(plan)
        names = FIRST_NAMES(plan.audience.contacts) if plan.audience.contacts else {}
    except Exception:  # an edited, now broken plan must not turn a send into a crash
        log.warning("number %s: plan %s could not be loaded", number.id, number.plan_path)
        return None
    rng = random.Random(f"template:{message.id}")
    return pool.template(rng, now.astimezone(zone(message.timezone)), names.get(message.recipient))
