"""Meta's account events in a Cloud API webhook: quality updates, capability updates, account alerts.

The payloads follow Meta's webhook reference for `phone_number_quality_update` (legacy FLAGGED /
UNFLAGGED / UPGRADE / DOWNGRADE and current ONBOARDING / THROUGHPUT_UPGRADE events, `current_limit`,
`old_limit`, `max_daily_conversations_per_business`), `business_capability_update` and `account_alerts`.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.providers.webhooks import (
    CloudEvents,
    WebhookError,
    parse_cloud_payload,
    parse_cloud_webhook,
)

WABA = "102290129340398"
TIME = 1748454394


def account_event(field: str, value: Any, waba: Any = WABA, time: Any = TIME) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": waba, "changes": [{"value": value, "field": field}]}
    if time is not None:
        entry["time"] = time
    return {"object": "whatsapp_business_account", "entry": [entry]}


def quality(event: str = "FLAGGED", **more: Any) -> dict[str, Any]:
    return account_event(
        "phone_number_quality_update", {"display_phone_number": "15550783881", "event": event, **more}
    )


def parsed(payload: dict[str, Any]) -> CloudEvents:
    return parse_cloud_payload(json.dumps(payload).encode())


def test_legacy_flagged_and_unflagged_set_the_status() -> None:
    (flagged,) = parsed(quality("FLAGGED", current_limit="TIER_10K")).signals
    assert flagged.field == "phone_number_quality_update" and flagged.event == "FLAGGED"
    assert flagged.phone == "+15550783881" and flagged.waba_id == WABA
    assert dict(flagged.changes) == {"status": "flagged", "tier": "TIER_10K"}
    assert flagged.at == datetime.fromtimestamp(TIME, UTC)
    (unflagged,) = parsed(quality("UNFLAGGED")).signals
    assert dict(unflagged.changes) == {"status": "connected"}


def test_limit_events_move_only_the_tier() -> None:
    (down,) = parsed(quality("DOWNGRADE", old_limit="TIER_2K", current_limit="TIER_250")).signals
    assert dict(down.changes) == {"tier": "TIER_250"}
    assert dict(down.detail) == {"event": "DOWNGRADE", "old_limit": "TIER_2K", "current_limit": "TIER_250"}
    # current events: the portfolio's limit when the per-number one is gone (removed in 2026)
    (upgrade,) = parsed(quality("THROUGHPUT_UPGRADE", max_daily_conversations_per_business="TIER_2K")).signals
    assert dict(upgrade.changes) == {"tier": "TIER_2K"}
    (onboarding,) = parsed(quality("ONBOARDING", current_limit="TIER_NOT_SET")).signals
    assert dict(onboarding.changes) == {}  # not set yet: no tier to tell
    (display,) = parsed(
        account_event(
            "phone_number_quality_update", {"display_phone_number": "+1 631-555-5555", "event": "UPGRADE"}
        )
    ).signals
    assert display.phone == "+16315555555"


def test_capability_update_gives_the_accounts_tier() -> None:
    (named,) = parsed(
        account_event(
            "business_capability_update",
            {"max_daily_conversations_per_business": "TIER_10K", "max_phone_numbers_per_waba": 25},
        )
    ).signals
    assert (named.field, named.waba_id, dict(named.changes)) == (
        "business_capability_update",
        WABA,
        {"tier": "TIER_10K"},
    )
    (counted,) = parsed(
        account_event(
            "business_capability_update",
            {"max_daily_conversation_per_phone": -1, "max_daily_conversations_per_business": 2000},
        )
    ).signals
    assert dict(counted.changes) == {"tier": "TIER_2K"}  # Meta's own example gives the number
    (legacy,) = parsed(
        account_event("business_capability_update", {"max_daily_conversation_per_phone": 250})
    ).signals
    assert dict(legacy.changes) == {"tier": "TIER_250"}


def test_account_alerts_name_their_entity_and_move_no_signal() -> None:
    alert = {
        "entity_type": "PHONE_NUMBER",
        "entity_id": "106540352242922",
        "alert_info": {
            "alert_severity": "WARNING",
            "alert_status": "ACTIVE",
            "alert_type": "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED",
            "alert_description": "Limits cannot be increased for your business.",
        },
    }
    (phone,) = parsed(account_event("account_alerts", alert)).signals
    assert (phone.phone_number_id, phone.business_id, dict(phone.changes)) == ("106540352242922", None, {})
    assert phone.detail["alert"] == "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED"
    assert phone.detail["severity"] == "WARNING"
    business = copy.deepcopy(alert)
    business["entity_type"] = "BUSINESS"
    (portfolio,) = parsed(account_event("account_alerts", business)).signals
    assert (portfolio.phone_number_id, portfolio.business_id) == (None, "106540352242922")


def test_messages_and_account_events_come_together_and_other_fields_are_skipped() -> None:
    payload = quality()
    payload["entry"][0]["changes"] += [
        {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
        {"field": "phone_number_name_update", "value": {"decision": "APPROVED"}},
    ]
    events = parsed(payload)
    assert len(events.signals) == 1 and events.inbound == []
    assert parse_cloud_webhook(json.dumps(payload).encode()) == []


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (account_event("phone_number_quality_update", {"event": "FLAGGED"}), "display_phone_number"),
        (account_event("phone_number_quality_update", {"display_phone_number": "1555", "event": "FLAGGED"}),
         "not a phone number"),
        (quality(event=3), "'event'"),  # type: ignore[arg-type]
        (quality(event="flagged; drop table"), "'event'"),
        (quality(current_limit=["TIER_1K"]), "current_limit"),
        (quality(max_daily_conversations_per_business=3000), "not a messaging limit"),
        (quality(old_limit=True), "old_limit"),
        (quality(current_limit="--1"), "current_limit"),  # int() refuses it: must not escape as ValueError
        (quality(current_limit="- 1"), "current_limit"),
        (account_event("business_capability_update", {"max_daily_conversations_per_business": "-+250"}),
         "max_daily_conversations_per_business"),
        (account_event("phone_number_quality_update", "FLAGGED"), "must be an object"),
        ({**quality(), "entry": [{"changes": quality()["entry"][0]["changes"]}]}, "'id'"),
        (account_event("phone_number_quality_update", {"display_phone_number": "15550783881", "event": "X"},
                       time="yesterday"), "timestamp"),
        (account_event("business_capability_update", {"max_daily_conversation_per_phone": "lots"}),
         "max_daily_conversation_per_phone"),
        (account_event("business_capability_update", {"max_phone_numbers_per_waba": "25"}), "whole number"),
        (account_event("account_alerts", {"entity_type": "PHONE_NUMBER", "entity_id": "1"}), "alert_info"),
        (account_event("account_alerts", {"entity_type": "PHONE_NUMBER", "entity_id": "abc",
                                          "alert_info": {"alert_type": "OBA_APPROVED"}}), "numeric id"),
        (account_event("account_alerts", {"entity_type": "BUSINESS", "entity_id": "1",
                                          "alert_info": {"alert_severity": "WARNING"}}), "alert_type"),
    ],
)  # fmt: skip
def test_a_malformed_account_event_rejects_the_whole_payload(payload: dict[str, Any], words: str) -> None:
    """Nothing of such a payload may be stored, messages included: the parse fails as a whole."""
    payload = copy.deepcopy(payload)
    payload["entry"].append(
        {
            "id": WABA,
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "metadata": {"display_phone_number": "1", "phone_number_id": "2"},
                        "messages": [{"id": "wamid.1", "from": "5511977770001", "timestamp": "1795000000"}],
                    },
                }
            ],
        }
    )
    with pytest.raises(WebhookError, match=words):
        parsed(payload)
    with pytest.raises(WebhookError):
        parse_cloud_webhook(json.dumps(payload).encode())


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
keys = st.sampled_from(
    ["display_phone_number", "event", "current_limit", "old_limit", "max_daily_conversations_per_business",
     "max_daily_conversation_per_phone", "max_phone_numbers_per_waba", "entity_type", "entity_id",
     "alert_info", "alert_type", "alert_severity", "alert_status", "alert_description"]
)  # fmt: skip
values = st.recursive(
    scalars | st.sampled_from(["FLAGGED", "TIER_2K", "15550783881", "PHONE_NUMBER", "-1", "250"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=6),
    max_leaves=25,
)


@given(
    field=st.sampled_from(["phone_number_quality_update", "business_capability_update", "account_alerts"]),
    value=values,
    waba=scalars | st.just(WABA),
    time=scalars,
)
@settings(max_examples=300, deadline=None)
def test_fuzzed_account_events_parse_or_raise_webhook_error(
    field: str, value: Any, waba: Any, time: Any
) -> None:
    try:
        events = parsed(account_event(field, value, waba, time))
    except WebhookError:
        return
    for signal in events.signals:
        assert set(signal.changes) <= {"quality", "status", "tier"}
        assert all(isinstance(v, str) and v for v in signal.changes.values())
        assert signal.phone is None or (signal.phone.startswith("+") and signal.phone[1:].isdigit())
