"""Peer warm-up over Meta's Cloud API, end to end: a number's opener to a fleet peer goes out as the
pool's approved template (the peer never wrote to it), the simulator delivers it and posts it to the
real webhook app as a signed Cloud-format webhook, and the peer's reply goes out as plain text inside
the customer-service window that message opened."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.test_webhook import served, wait_for
from warmup.clock import ManualClock
from warmup.core.localtime import local_date_of
from warmup.secrets import Secret
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import send_one
from warmup.store import history, inbound, numbers
from warmup.store.models import OutboundMessage
from warmup.webhook import WebhookConfig, create_app

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
APP_SECRET = "meta-app-secret-peers"
TEMPLATE = "templates:\n  - {name: catch_up, language: en_US, parameters: ['Hi {first_name}']}\n"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MONDAY_NOON)


@pytest.fixture
def fleet(engine: Engine, make_fleet: Any, clock: ManualClock) -> Any:
    fleet = make_fleet(
        engine, clock, count=2, volume=3, reply_probability=1.0, timezones=("America/Sao_Paulo",) * 2
    )
    pool = fleet.plan_path.parent / "pool.yaml"
    pool.write_text(pool.read_text() + TEMPLATE)
    fleet.as_cloud_api()
    fleet.admin(
        "PUT", "/_sim/cloud/templates", json={"templates": [{"name": "catch_up", "language": "en_US"}]}
    )
    return fleet


@pytest.fixture
def runtime(engine: Engine, clock: ManualClock) -> Iterator[Runtime]:
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    yield runtime
    runtime.close()


def _send(engine: Engine, runtime: Runtime, clock: ManualClock, message: OutboundMessage) -> OutboundMessage:
    clock.set(max(clock.now(), message.scheduled_at, message.not_before or message.scheduled_at))
    assert message.id is not None
    send_one(engine, message.id, "w", clock, runtime.provider_for, plans=runtime.plans)
    done = history.get_message(engine, message.id)
    assert done is not None
    return done


def test_openers_go_as_templates_and_peer_replies_as_text_inside_the_window(
    engine: Engine, fleet: Any, clock: ManualClock, runtime: Runtime
) -> None:
    a, b = fleet.number_ids
    phone_a, phone_b = fleet.phones
    today = local_date_of(clock.now(), "America/Sao_Paulo")
    for number_id in (a, b):
        assert plan_number_day(runtime, number_id, today).planned
    config = WebhookConfig(meta_app_secret=Secret(APP_SECRET))
    with served(create_app(engine, config, clock=clock)) as http:
        url = f"{http.base_url}/webhooks/cloud"
        fleet.admin("PUT", "/_sim/cloud/webhook", json={"url": url, "app_secret": APP_SECRET})

        to_peer = [m for m in history.list_messages(engine, a, today) if m.recipient == phone_b]
        assert to_peer, "the plan gave number A no opener to its peer"
        opener = _send(engine, runtime, clock, to_peer[0])
        assert opener.state == "sent", opener.reason
        assert opener.template is not None and opener.template["name"] == "catch_up"  # B never wrote to A

        clock.advance(timedelta(minutes=2))  # the simulator delivers it and posts B's inbound webhook
        fleet.admin("POST", "/_sim/tick")
        assert wait_for(lambda: inbound.last_message_from(engine, b, phone_a) is not None)

        replies = [m for m in history.list_messages(engine, b, today) if m.in_reply_to == opener.id]
        assert len(replies) == 1, "no peer reply was scheduled"
        reply = _send(engine, runtime, clock, replies[0])
        assert reply.state == "sent", reply.reason
        assert reply.template is None  # inside the window A's message opened: plain text

    sent = {s["message_id"]: s for s in fleet.sends() if s.get("message_id")}
    assert sent[reply.provider_message_id].get("type", "text") == "text"
    number_b = numbers.get_number(engine, b)
    assert number_b is not None and number_b.provider == "cloud_api"
