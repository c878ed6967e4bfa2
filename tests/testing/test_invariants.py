"""The invariant checker itself: it must catch each kind of breach (else the fleet tests prove nothing)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from warmup.testing.invariants import StoredMessage, evaluate

PHONE = "+5511900000001"
ZONE = "America/Sao_Paulo"  # UTC-3
DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # the 23rd is over in Sao Paulo


def row(mid: int, state: str, pmid: str | None = None, *, text: str = "hi", day: date = DAY) -> StoredMessage:
    return StoredMessage(mid, 1, PHONE, ZONE, day, "+5511800000001", text, state, pmid)


def send(pmid: str, at: str = "2026-11-23T15:00:00+00:00", text: str = "hi") -> dict[str, Any]:
    return {"channel": PHONE, "to": "+5511800000001", "body": text, "accepted_at": at, "message_id": pmid}


QUOTAS = {(PHONE, DAY): 2}
ZONES = {PHONE: ZONE}


def test_a_clean_run_is_ok() -> None:
    rows = [row(1, "sent", "a"), row(2, "skipped"), row(3, "unknown")]
    report = evaluate(rows, QUOTAS, ZONES, [send("a")], NOW)
    assert report.ok
    assert (report.planned, report.sent, report.skipped, report.unknown, report.log_sends) == (3, 1, 1, 1, 1)


def test_over_quota_counts_by_local_day_of_the_number() -> None:
    rows = [row(1, "sent", "a"), row(2, "sent", "b"), row(3, "sent", "c")]
    # 02:30 UTC on the 24th is still the 23rd in Sao Paulo: three sends on a day with quota 2
    sends = [send("a"), send("b"), send("c", at="2026-11-24T02:30:00+00:00")]
    report = evaluate(rows, QUOTAS, ZONES, sends, NOW)
    assert report.over_quota == [f"{PHONE} {DAY}: 3 sends > quota 2"]
    assert not report.ok


def test_a_send_on_a_day_without_plan_is_a_breach() -> None:
    report = evaluate([row(1, "sent", "a")], {}, ZONES, [send("a")], NOW)
    assert report.over_quota and "without a plan" in report.over_quota[0]


def test_a_log_entry_nobody_accounts_for_is_a_duplicate() -> None:
    rows = [row(1, "sent", "a")]
    report = evaluate(rows, QUOTAS, ZONES, [send("a"), send("b")], NOW)
    assert report.duplicates == 1 and not report.ok


def test_an_unknown_row_explains_one_log_entry_only() -> None:
    rows = [row(1, "unknown")]
    once = evaluate(rows, QUOTAS, ZONES, [send("a")], NOW)
    assert once.ok and once.explained_by_unknown == 1
    twice = evaluate(rows, QUOTAS, ZONES, [send("a"), send("b")], NOW)
    assert twice.duplicates == 1 and not twice.ok


def test_an_unknown_row_explains_only_its_own_text() -> None:
    report = evaluate([row(1, "unknown", text="other")], QUOTAS, ZONES, [send("a")], NOW)
    assert report.duplicates == 1


def test_two_sent_rows_with_one_provider_id_are_a_duplicate() -> None:
    rows = [row(1, "sent", "a"), row(2, "sent", "a")]
    report = evaluate(rows, QUOTAS, ZONES, [send("a")], NOW)
    assert report.duplicates == 1


def test_a_sent_row_the_simulator_never_saw_is_missing() -> None:
    report = evaluate([row(1, "sent", "zzz"), row(2, "sent", None)], QUOTAS, ZONES, [], NOW)
    assert report.missing_in_log == 2 and not report.ok


def test_non_terminal_rows_are_stuck_only_once_their_day_is_over() -> None:
    today = date(2026, 11, 24)
    rows = [row(1, "sending"), row(2, "queued"), row(3, "planned", day=today), row(4, "sending", day=today)]
    report = evaluate(rows, {**QUOTAS, (PHONE, today): 5}, ZONES, [], NOW)
    assert report.stuck == 2
    assert report.in_flight == 2
