"""The Cloud API side of the model (`warmup/simulator/cloud.py`) without HTTP: tiers moving on their own,
throughput, restrictions, peers and the customer-service window, blocks, configuration errors."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from tests.simulator.model_fixture import FRIENDLY, HOSTILE, T0, contact
from warmup.simulator import ChannelSpec, CloudConfig, SimConfig, SimError, SimModel, Template
from warmup.simulator.channels import MetaError
from warmup.simulator.cloud import LADDER, tier_above, tier_below
from warmup.simulator.model import CloudSend

C1 = ChannelSpec("tok-c1", "+5511977770001", date(2026, 10, 1), name="C1", portfolio="acme")
C2 = ChannelSpec("tok-c2", "+5511977770002", date(2026, 10, 1), name="C2", portfolio="acme")
QUIET = replace(HOSTILE, block_rate=0.0)


def cloud_model(behaviour: object = QUIET, **cloud: object) -> SimModel:
    config = CloudConfig(**{"portfolios": {"acme": "TIER_50"}, **cloud})  # type: ignore[arg-type]
    return SimModel(SimConfig(seed=3, channels=(C1, C2), behaviour=behaviour, cloud=config))  # type: ignore[arg-type]


def opener(m: SimModel, spec: ChannelSpec, to: str, now: datetime, name: str = "hello_world") -> None:
    language = next(lang for n, lang in m.cloud.templates if n == name)
    m.cloud_send(spec.token, spec.digits, CloudSend(to, template=name, language=language), now)


def fields(m: SimModel, spec: ChannelSpec, now: datetime) -> tuple[str, str, str]:
    info = m.phone_info(spec.token, spec.digits, ["status", "messaging_limit_tier"], now)
    return info["quality_rating"], info["status"], info["messaging_limit_tier"]


def test_the_ladder_is_the_v23_enum_and_tier_2k_fits_in() -> None:
    assert LADDER == ("TIER_50", "TIER_250", "TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED")
    assert tier_above("TIER_250") == "TIER_1K" and tier_above("TIER_2K") == "TIER_10K"
    assert tier_below("TIER_2K") == "TIER_1K" and tier_below("TIER_50") is None
    assert tier_above("TIER_UNLIMITED") is None


def test_half_the_limit_used_upgrades_the_portfolio_at_the_next_check() -> None:
    m = cloud_model()
    m.advance(T0)  # first check: nothing used yet
    for i in range(25):
        opener(m, C1 if i % 2 else C2, contact(i), T0 + timedelta(minutes=i))
    m.advance(T0 + timedelta(hours=5))
    assert fields(m, C1, T0 + timedelta(hours=5))[2] == "TIER_50"  # checks run every 6 h
    m.advance(T0 + timedelta(hours=6))
    assert (
        fields(m, C1, T0 + timedelta(hours=6))[2] == fields(m, C2, T0 + timedelta(hours=6))[2] == "TIER_250"
    )
    notices = [(n["field"], n["value"].get("event")) for n in m.cloud.notices]
    assert [n for n in notices if n[1] != "FLAGGED"] == [  # (nobody answers: quality YELLOW, FLAGGED)
        ("business_capability_update", None),
        ("phone_number_quality_update", "UPGRADE"),
        ("phone_number_quality_update", "UPGRADE"),
    ]
    m.advance(T0 + timedelta(hours=12))  # the evidence was for the old tier: no second upgrade
    assert fields(m, C1, T0 + timedelta(hours=12))[2] == "TIER_250"


def test_low_quality_defers_the_upgrade_with_an_account_alert() -> None:
    m = cloud_model(HOSTILE)  # nobody answers: YELLOW; the admin makes C2 RED
    m.advance(T0)
    for i in range(25):
        opener(m, C1, contact(i), T0)
    m.update_cloud(C2.phone, T0, quality="RED")
    for hours in (6, 12):
        m.advance(T0 + timedelta(hours=hours))
    assert fields(m, C1, T0 + timedelta(hours=12))[2] == "TIER_50"
    alerts = [n["value"] for n in m.cloud.notices if n["field"] == "account_alerts"]
    assert len(alerts) == 1  # once for the same evidence
    assert alerts[0]["entity_type"] == "BUSINESS"
    assert alerts[0]["alert_info"]["alert_type"] == "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED"
    assert "6 h" in alerts[0]["alert_info"]["alert_description"]


def test_a_week_flagged_takes_the_portfolio_one_tier_down() -> None:
    m = cloud_model(portfolios={"acme": "TIER_1K"})
    m.update_cloud(C1.phone, T0, quality="RED")
    assert fields(m, C1, T0)[:2] == ("RED", "CONNECTED")
    assert fields(m, C1, T0 + timedelta(hours=1))[:2] == ("RED", "FLAGGED")
    for day in range(1, 9):
        m.advance(T0 + timedelta(days=day, hours=1))
    assert fields(m, C2, T0 + timedelta(days=8, hours=1))[2] == "TIER_250"  # down to TIER_250 once
    events = [n["value"]["event"] for n in m.cloud.notices if n["field"] == "phone_number_quality_update"]
    assert events.count("DOWNGRADE") == 2 and events[0] == "FLAGGED"  # both numbers heard of it


def test_throughput_answers_130429_within_one_second() -> None:
    m = cloud_model(throughput=3, portfolios={"acme": "TIER_1K"})
    for i in range(3):
        opener(m, C1, contact(i), T0)
    with pytest.raises(MetaError) as err:
        opener(m, C1, contact(9), T0 + timedelta(milliseconds=900))
    assert (err.value.code, err.value.status, err.value.retry_after) == (130429, 429, 1)
    opener(m, C2, contact(9), T0)  # throughput is per number
    opener(m, C1, contact(9), T0 + timedelta(seconds=1))


def test_restricted_number_only_answers_inside_the_window() -> None:
    m = cloud_model(FRIENDLY)
    opener(m, C1, contact(1), T0)
    m.advance(T0 + timedelta(hours=1))
    m.update_cloud(C1.phone, T0 + timedelta(hours=1), status="RESTRICTED")
    later = T0 + timedelta(hours=1)
    assert fields(m, C1, later)[1] == "RESTRICTED"
    with pytest.raises(MetaError) as err:
        opener(m, C1, contact(2), later)
    assert err.value.code == 368
    m.cloud_send(C1.token, C1.digits, CloudSend(contact(1), body="answer"), later)  # in the window
    m.update_cloud(C1.phone, later, status=None)
    opener(m, C1, contact(2), later)
    with pytest.raises(ValueError, match="status must be one of"):
        m.update_cloud(C1.phone, later, status="BANNED")


def test_a_peer_message_opens_the_window_for_a_free_form_answer() -> None:
    m = cloud_model()
    with pytest.raises(MetaError) as err:
        m.cloud_send(C2.token, C2.digits, CloudSend(C1.phone, body="hi"), T0)
    assert err.value.code == 131047
    opener(m, C1, C2.phone, T0)  # the peer's opener lands in C2's inbox when delivered
    m.advance(T0 + timedelta(minutes=1))
    m.cloud_send(C2.token, C2.digits, CloudSend(C1.phone, body="hi back"), T0 + timedelta(minutes=1))
    assert [r.to for r in m.limit_log()] == [C2.phone]  # the answer was inside the window


def test_behaviour_blocks_count_once_per_user() -> None:
    m = cloud_model(replace(HOSTILE, block_rate=1.0), portfolios={"acme": "TIER_1K"})
    for i in range(10):
        opener(m, C1, contact(i % 2), T0 + timedelta(minutes=i))  # two users, five openers each
    m.advance(T0 + timedelta(hours=1))
    state = m.channel_state(C1.phone, T0 + timedelta(hours=1))
    assert state["cloud"]["blocks"] == 2
    assert state["cloud"]["quality_rating"] == "RED"
    assert m.block(C1.phone, contact(0), T0 + timedelta(hours=1)) is False  # already blocked


def test_marketing_limit_can_be_switched_off() -> None:
    templates = (Template("promo", "pt_BR", "MARKETING"),)
    m = cloud_model(templates=templates, marketing_per_user=None, portfolios={"acme": "TIER_1K"})
    for spec in (C1, C2):
        opener(m, spec, contact(1), T0, "promo")
    assert [s.body for s in m.sends()] == ["[template promo/pt_BR]"] * 2
    assert len(m.limit_log()) == 2


def test_bad_cloud_configuration_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown messaging limit tier"):
        CloudConfig(portfolios={"acme": "TIER_3K"})
    with pytest.raises(ValueError, match="app secret"):
        CloudConfig(webhook_url="http://127.0.0.1:9/hook")
    with pytest.raises(ValueError, match="http"):
        CloudConfig(webhook_url="ftp://x", app_secret="s")
    with pytest.raises(ValueError, match="category"):
        Template("x", "en_US", "SPAM")
    m = cloud_model()
    with pytest.raises(ValueError, match="no such portfolio"):
        m.cloud_alert(
            portfolio="nope",
            phone=None,
            alert_type="X",
            severity="WARNING",
            description="d",
            status="ACTIVE",
            now=T0,
        )
    with pytest.raises(SimError):
        m.phone_info(C1.token, C2.digits, [], T0)
    assert "app_secret" not in repr(CloudConfig(webhook_url="http://x/h", app_secret="very-secret"))
    assert "very-secret" not in repr(CloudConfig(webhook_url="http://x/h", app_secret="very-secret"))
