"""Meta's 24 h customer-service window, end to end: a Cloud API number's message goes out as text to
someone inside their window, as the pool's template outside it, and is skipped with its cause when the
pool names no template. Against a real store and the simulator's Cloud API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from warmup.clock import ManualClock
from warmup.core.domain import SkipCause
from warmup.core.localtime import local_date_of
from warmup.files.content import load_pool
from warmup.files.problems import PlanError
from warmup.providers.base import SendResult
from warmup.providers.cloud_api import CloudApiProvider
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import send_one
from warmup.services.service_window import SERVICE_WINDOW, in_window, send_cloud
from warmup.store import claims as store_claims
from warmup.store import history, inbound, portfolios
from warmup.store.models import OutboundMessage
from warmup.store.tables import NUMBERS, PORTFOLIO_SENDS

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TEMPLATES = (
    "templates:\n  - {name: hello_again, language: en_US, parameters: ['Hi {first_name}', 'this week']}\n"
)


class Cloud:
    """One simulator channel driven as a Cloud API number (the simulator's phone-number-id is its digits)."""

    def __init__(self, engine: Engine, fleet: Fleet, clock: ManualClock) -> None:
        self.engine = engine
        self.fleet = fleet
        self.clock = clock
        self.number = fleet.number_ids[0]
        self.phone = fleet.phones[0]
        fleet.as_cloud_api(count=1)
        self.runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))

    def with_templates(self) -> None:
        """The pool names `hello_again` and the simulator (Meta) has it approved."""
        pool = self.fleet.plan_path.parent / "pool.yaml"
        pool.write_text(pool.read_text() + TEMPLATES)
        approved = [{"name": "hello_again", "language": "en_US"}]
        self.fleet.admin("PUT", "/_sim/cloud/templates", json={"templates": approved})

    def plan(self) -> list[OutboundMessage]:
        day = local_date_of(self.clock.now(), "America/Sao_Paulo")
        assert plan_number_day(self.runtime, self.number, day).planned
        return history.list_messages(self.engine, self.number, day)

    def send_next(self) -> OutboundMessage:
        pending = [m for m in self.plan_messages() if m.state in ("planned", "queued")]
        message = min(pending, key=lambda m: m.scheduled_at)
        self.clock.set(max(self.clock.now(), message.scheduled_at))
        assert message.id is not None
        send_one(
            self.engine, message.id, "w", self.clock, self.runtime.provider_for, plans=self.runtime.plans
        )
        found = history.get_message(self.engine, message.id)
        assert found is not None
        return found

    def plan_messages(self) -> list[OutboundMessage]:
        day = local_date_of(self.clock.now(), "America/Sao_Paulo")
        return history.list_messages(self.engine, self.number, day)

    def wrote_to_us(self, phone: str, at: datetime, *, tell_meta: bool = True) -> None:
        """``phone`` wrote to the number at ``at``: stored as we would from a webhook, and (unless not
        ``tell_meta``) written through the simulator so Meta's side sees the open window too."""
        if tell_meta:
            self.fleet.admin(
                "POST", f"/_sim/channels/{self.phone}/inbound", json={"user": phone, "body": "hi!"}
            )
        inbound.add_inbound(
            self.engine,
            self.number,
            provider_message_id=f"wamid.in.{phone}.{at.timestamp()}",
            kind="message",
            chat_phone=phone,
            text="hi!",
            received_at=at,
        )


@pytest.fixture
def cloud(engine: Engine, make_fleet: Any) -> Iterator[Cloud]:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=3)
    c = Cloud(engine, fleet, clock)
    yield c
    c.runtime.close()


def test_the_window_is_24_hours_after_the_last_message() -> None:
    now = MONDAY_NOON
    assert not in_window(None, now)
    assert in_window(now - SERVICE_WINDOW + timedelta(seconds=1), now)
    assert not in_window(now - SERVICE_WINDOW, now)


def test_outside_the_window_a_message_goes_out_as_the_pool_s_template(cloud: Cloud) -> None:
    cloud.with_templates()
    cloud.plan()
    sent = cloud.send_next()
    assert sent.state == "sent", sent.reason
    assert sent.template is not None and sent.template["name"] == "hello_again"
    assert sent.template["language"] == "en_US"
    assert sent.template["parameters"][1] == "this week"
    assert sent.template["parameters"][0].startswith("Hi")  # with the contact's name, or without one


def test_inside_the_window_a_message_goes_out_as_its_text(cloud: Cloud) -> None:
    cloud.with_templates()
    messages = cloud.plan()
    for message in messages:  # everyone wrote to us an hour ago
        cloud.wrote_to_us(message.recipient, cloud.clock.now() - timedelta(hours=1))
    sent = cloud.send_next()
    assert sent.state == "sent", sent.reason
    assert sent.template is None


def test_without_a_template_outside_the_window_the_message_is_skipped_with_its_cause(cloud: Cloud) -> None:
    messages = cloud.plan()
    stale = cloud.clock.now() - SERVICE_WINDOW - timedelta(minutes=1)
    for message in messages:  # they wrote, but more than 24 hours ago
        cloud.wrote_to_us(message.recipient, stale, tell_meta=False)
    skipped = cloud.send_next()
    assert skipped.state == "skipped"
    assert skipped.cause == SkipCause.NO_TEMPLATE.value
    assert "24 h customer-service window" in (skipped.reason or "")
    assert "names no approved template" in (skipped.reason or "")


def test_a_text_meta_refuses_as_outside_the_window_goes_out_as_a_template(cloud: Cloud) -> None:
    """Our store says the window is open, Meta says 131047 (it never saw that message): the refusal
    proves the text did not go out, so the same claim sends the template."""
    cloud.with_templates()
    messages = cloud.plan()
    for message in messages:
        cloud.wrote_to_us(message.recipient, cloud.clock.now() - timedelta(hours=1), tell_meta=False)
    sent = cloud.send_next()
    assert sent.state == "sent", sent.reason
    assert sent.template is not None and sent.template["name"] == "hello_again"


def test_bad_templates_in_a_pool_are_located(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(
        "language: en\nopeners: [Hi]\nreplies: [Yes]\n"
        "templates:\n"
        "  - {name: Hello-Again, language: en_US}\n"
        "  - {name: ok_name, language: english, parameters: ['{first_name}']}\n"
    )
    with pytest.raises(PlanError) as info:
        load_pool(path)
    found = {(p.line, p.field) for p in info.value.problems}
    assert found == {
        (5, "templates[0].name"),
        (6, "templates[1].language"),
        (6, "templates[1].parameters[0]"),
    }
    assert any("Meta refuses an empty parameter" in p.message for p in info.value.problems)


def test_a_template_sent_after_the_window_closed_since_its_claim_takes_a_portfolio_slot(
    cloud: Cloud,
) -> None:
    """The claim saw the recipient inside their window (nothing counted); by the send the window has
    closed (a slow batch, an accelerated clock), so the message goes out as a template: it is
    business-initiated and must count against the portfolio, or the tier can be passed."""
    cloud.with_templates()
    portfolios.set_portfolio(cloud.engine, "acme", "TIER_50", cloud.clock.now())
    with cloud.engine.begin() as conn:
        conn.execute(sa.update(NUMBERS).where(NUMBERS.c.id == cloud.number).values(portfolio="acme"))
    message = min(cloud.plan(), key=lambda m: m.scheduled_at)
    assert message.id is not None
    cloud.clock.set(max(cloud.clock.now(), message.scheduled_at))
    wrote = cloud.clock.now() - SERVICE_WINDOW + timedelta(minutes=15)
    cloud.wrote_to_us(message.recipient, wrote, tell_meta=False)
    claimed = store_claims.claim(cloud.engine, message.id, "w", cloud.clock.now())
    assert claimed.message is not None, claimed.reason
    assert counted(cloud.engine, message.id) == 0  # inside the window at the claim: not counted
    cloud.clock.advance(timedelta(minutes=20))  # the window closed before the send
    provider = cloud.runtime.provider_for(cloud.number)
    assert isinstance(provider, CloudApiProvider)
    result = send_cloud(cloud.engine, claimed.message, provider, cloud.clock, cloud.runtime.plans)
    assert isinstance(result, SendResult) and result.provider_message_id is not None
    assert counted(cloud.engine, message.id) == 1


def counted(engine: Engine, message_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(PORTFOLIO_SENDS)
                .where(PORTFOLIO_SENDS.c.message_id == message_id)
            ).scalar_one()
        )
