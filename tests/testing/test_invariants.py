"""The invariant checker itself: it must catch each kind of breach (else the fleet tests, the demo and the
benchmarks prove nothing), and it applies ONE rule to `unknown` rows: one the simulator accepted counts
as sent, one it did not counts only against the quota."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from warmup.testing.invariants import (
    PACED_CHECK,
    QUOTA_CHECK,
    STUCK_CHECK,
    TWICE_CHECK,
    DayTally,
    StoredMessage,
    evaluate,
)

PHONE = "+5511900000001"
OTHER = "+34600000002"
ZONE = "America/Sao_Paulo"  # UTC-3
ZONES = {PHONE: ZONE, OTHER: "Europe/Madrid"}
TO = "+5511800000001"
DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # the 23rd is over in Sao Paulo and Madrid
NOON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 12:00 in Sao Paulo, 16:00 in Madrid


def row(
    mid: int,
    state: str,
    pmid: str | None = None,
    *,
    text: str = "hi",
    day: date = DAY,
    phone: str = PHONE,
    reason: str | None = None,
) -> StoredMessage:
    if state == "skipped" and reason is None:
        reason = "day over"
    return StoredMessage(mid, 1, phone, ZONES[phone], day, TO, text, state, pmid, reason)


def send(
    pmid: str, at: str | datetime = "2026-11-23T15:00:00+00:00", text: str = "hi", phone: str = PHONE
) -> dict[str, Any]:
    accepted = at if isinstance(at, str) else at.isoformat()
    return {"channel": phone, "to": TO, "body": text, "accepted_at": accepted, "message_id": pmid}


def plan(
    quota: int, used: int | None = None, *, phone: str = PHONE, day: date = DAY, held: int | None = None
) -> DayTally:
    """A day plan whose bookkeeping is right unless told otherwise (``held`` defaults to ``used``)."""
    used = quota if used is None else used
    return DayTally(1, 1, phone, day, 1, "ramp", quota, used, used if held is None else held, used)


def days(*plans: DayTally) -> dict[tuple[str, date], DayTally]:
    return {(p.phone, p.local_date): p for p in plans}


QUOTAS = days(plan(2))


def checks_ok(report: Any) -> dict[str, bool]:
    return {check.name: check.ok for check in report.checks()}


def sent(n: int, phone: str = PHONE) -> tuple[list[dict[str, Any]], list[StoredMessage]]:
    """``n`` messages sent at noon, one minute apart, each stored with its provider id."""
    sends = [send(f"m{i}", NOON + timedelta(minutes=i), phone=phone) for i in range(n)]
    rows = [row(i, "sent", f"m{i}", phone=phone) for i in range(n)]
    return sends, rows


def test_a_clean_run_is_ok() -> None:
    rows = [row(1, "sent", "a"), row(2, "skipped"), row(3, "unknown")]
    report = evaluate(rows, QUOTAS, ZONES, [send("a")], NOW)
    assert report.ok
    assert (report.planned, report.sent, report.skipped, report.unknown, report.log_sends) == (3, 1, 1, 1, 1)


def test_a_clean_run_passes_every_check_with_its_detail() -> None:
    sends, rows = sent(3)
    report = evaluate(rows, days(plan(3)), ZONES, sends, NOW)
    checks = report.checks()
    assert [c.name for c in checks] == [QUOTA_CHECK, TWICE_CHECK, STUCK_CHECK, PACED_CHECK]
    assert [c.ok for c in checks] == [True, True, True, True]
    assert checks[0].detail == "1 number-days checked against the send log, busiest at 100% of its quota"
    assert checks[1].detail == "3 sends in the simulator's log, each one stored message, none repeated"
    assert checks[2].detail == (
        "all 3 messages of finished local days are terminal (3 sent, 0 failed, 0 skipped, 0 unknown)"
    )


# ------------------------------------------------------------------------------------------------ quota


def test_over_quota_counts_by_local_day_of_the_number() -> None:
    rows = [row(1, "sent", "a"), row(2, "sent", "b"), row(3, "sent", "c")]
    # 02:30 UTC on the 24th is still the 23rd in Sao Paulo: three sends on a day with quota 2
    sends = [send("a"), send("b"), send("c", at="2026-11-24T02:30:00+00:00")]
    report = evaluate(rows, QUOTAS, ZONES, sends, NOW)
    assert report.over_quota == [f"{PHONE} {DAY}: 3 sends > quota 2"]
    assert not report.ok


def test_a_send_counts_on_the_numbers_local_day_not_the_utc_day() -> None:
    late = send("late", datetime(2026, 11, 24, 2, 30, tzinfo=UTC))  # 23:30 on the 23rd in Sao Paulo
    rows = [row(1, "sent", "early"), row(2, "sent", "late")]
    tomorrow = plan(5, 0, day=DAY + timedelta(days=1))
    assert not evaluate(rows, days(plan(1), tomorrow), ZONES, [send("early"), late], NOW).ok
    assert evaluate(rows, days(plan(2), tomorrow), ZONES, [send("early"), late], NOW).ok


def test_more_sends_than_the_quota_fail_the_quota_check_only() -> None:
    sends, rows = sent(4)
    report = evaluate(rows, days(plan(3)), ZONES, sends, NOW)
    assert checks_ok(report) == {QUOTA_CHECK: False, TWICE_CHECK: True, STUCK_CHECK: True, PACED_CHECK: True}


def test_a_send_on_a_day_without_plan_is_a_breach() -> None:
    report = evaluate([row(1, "sent", "a")], {}, ZONES, [send("a")], NOW)
    assert report.over_quota and "without a plan" in report.over_quota[0]
    sends, rows = sent(1, phone=OTHER)
    checks = evaluate(rows, QUOTAS, ZONES, sends, NOW).checks()
    assert not checks[0].ok and OTHER in checks[0].detail


def test_used_above_quota_in_the_store_fails_even_without_sends() -> None:
    report = evaluate([], days(plan(3, 4)), ZONES, [], NOW)
    assert report.slot_errors and not report.ok
    assert not report.checks()[0].ok


def test_used_that_disagrees_with_the_messages_holding_a_slot_fails() -> None:
    report = evaluate([], days(plan(3, 2, held=1)), ZONES, [], NOW)
    assert report.slot_errors == [f"{PHONE} {DAY}: used 2 but 1 messages hold a slot"]
    assert not report.ok


# -------------------------------------------------------------------------------------------- twice


def test_a_log_entry_nobody_accounts_for_is_a_duplicate() -> None:
    rows = [row(1, "sent", "a")]
    report = evaluate(rows, QUOTAS, ZONES, [send("a"), send("b")], NOW)
    assert report.duplicates == 1 and not report.ok
    assert checks_ok(report) == {QUOTA_CHECK: True, TWICE_CHECK: False, STUCK_CHECK: True, PACED_CHECK: True}


def test_an_unknown_the_simulator_accepted_counts_as_sent() -> None:
    sends, rows = sent(2)
    lost = send("m-lost", NOON + timedelta(minutes=9))
    report = evaluate([*rows, row(99, "unknown")], days(plan(3)), ZONES, [*sends, lost], NOW)
    assert report.ok and report.explained_by_unknown == 1
    assert report.sends_per_day == {(PHONE, DAY): 3}  # it took its place in the day's sends
    # ... so with a quota of 2 the day is over quota, though only two rows are `sent`
    over = evaluate([*rows, row(99, "unknown")], days(plan(2, held=3)), ZONES, [*sends, lost], NOW)
    assert over.over_quota == [f"{PHONE} {DAY}: 3 sends > quota 2"]


def test_an_unknown_the_simulator_did_not_accept_counts_only_against_the_quota() -> None:
    sends, rows = sent(1)
    unknown = row(9, "unknown")
    report = evaluate([*rows, unknown], days(plan(2)), ZONES, sends, NOW)
    assert report.ok and report.explained_by_unknown == 0
    assert report.sends_per_day == {(PHONE, DAY): 1}
    # its slot is held: a `used` that left it out is wrong
    assert not evaluate([*rows, unknown], days(plan(2, 1, held=2)), ZONES, sends, NOW).ok


def test_an_unknown_row_explains_one_log_entry_only() -> None:
    rows = [row(1, "unknown")]
    once = evaluate(rows, QUOTAS, ZONES, [send("a")], NOW)
    assert once.ok and once.explained_by_unknown == 1
    twice = evaluate(rows, QUOTAS, ZONES, [send("a"), send("b")], NOW)  # re-sent: a double send
    assert twice.duplicates == 1 and not twice.ok


def test_an_unknown_row_explains_only_its_own_text() -> None:
    report = evaluate([row(1, "unknown", text="other")], QUOTAS, ZONES, [send("a")], NOW)
    assert report.duplicates == 1


def test_an_unknown_row_explains_only_its_own_numbers_sends() -> None:
    rows = [row(1, "unknown", phone=OTHER)]
    report = evaluate(rows, days(plan(2), plan(2, phone=OTHER)), ZONES, [send("a")], NOW)
    assert report.duplicates == 1 and report.explained_by_unknown == 0


def test_a_sending_row_explains_a_log_entry_while_in_flight() -> None:
    today = DAY + timedelta(days=1)
    rows = [row(1, "sending", day=today)]
    report = evaluate(rows, days(plan(2, day=today)), ZONES, [send("a", "2026-11-24T11:59:00+00:00")], NOW)
    assert report.ok and report.explained_in_flight == 1 and report.in_flight == 1


def test_two_sent_rows_with_one_provider_id_are_a_duplicate() -> None:
    rows = [row(1, "sent", "a"), row(2, "sent", "a")]
    report = evaluate(rows, QUOTAS, ZONES, [send("a")], NOW)
    assert report.duplicates == 1
    assert "messages 1, 2 share the provider id a" in report.checks()[1].detail


def test_one_provider_id_twice_in_the_log_is_a_duplicate() -> None:
    report = evaluate([row(1, "sent", "a")], QUOTAS, ZONES, [send("a"), send("a")], NOW)
    assert report.duplicates == 1 and not report.ok


def test_a_sent_row_the_simulator_never_saw_is_missing() -> None:
    report = evaluate([row(1, "sent", "zzz"), row(2, "sent", None)], QUOTAS, ZONES, [], NOW)
    assert report.missing_in_log == 2 and not report.ok
    check = report.checks()[1]
    assert not check.ok and "never accepted" in check.detail


# -------------------------------------------------------------------------------------------- stuck


def test_non_terminal_rows_are_stuck_only_once_their_day_is_over() -> None:
    today = date(2026, 11, 24)
    rows = [row(1, "sending"), row(2, "queued"), row(3, "planned", day=today), row(4, "sending", day=today)]
    report = evaluate(rows, {**QUOTAS, **days(plan(5, day=today))}, ZONES, [], NOW)
    assert report.stuck == 2
    assert report.in_flight == 2
    assert checks_ok(report)[STUCK_CHECK] is False


def test_a_day_is_over_only_after_the_grace() -> None:
    rows = [row(1, "planned")]  # of the 23rd, which ended in Sao Paulo at 03:00 UTC on the 24th
    just_after = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)
    assert evaluate(rows, QUOTAS, ZONES, [], just_after).stuck == 1
    assert evaluate(rows, QUOTAS, ZONES, [], just_after, grace=timedelta(hours=1)).stuck == 0


def test_a_message_left_sending_after_the_workers_stopped_is_stuck() -> None:
    rows = [row(1, "sending", day=DAY + timedelta(days=1))]  # today: not over yet
    assert evaluate(rows, {}, ZONES, [], NOW).stuck == 0
    assert evaluate(rows, {}, ZONES, [], NOW, stopped=True).stuck == 1


def test_a_skipped_message_without_a_reason_is_stuck() -> None:
    rows = [row(1, "skipped", reason=""), row(2, "skipped", day=DAY + timedelta(days=1), reason="")]
    report = evaluate(rows, QUOTAS, ZONES, [], NOW)
    assert report.stuck == 2
    assert "skipped without a reason" in report.stuck_details[0]


def paced(quota: int, gap_seconds: float) -> dict[tuple[str, date], DayTally]:
    tally = plan(quota)
    return days(DayTally(**{**tally.__dict__, "gap_seconds": gap_seconds}))


def test_two_sends_of_a_number_closer_than_its_minimum_gap_fail_the_pacing_check() -> None:
    sends, rows = sent(3)  # one minute apart
    report = evaluate(rows, paced(3, 60.0), ZONES, sends, NOON)
    assert checks_ok(report)[PACED_CHECK] and report.tightest == 1.0  # exactly the gap: allowed
    report = evaluate(rows, paced(3, 61.0), ZONES, sends, NOON)
    assert not report.ok and checks_ok(report) == {
        QUOTA_CHECK: True,
        TWICE_CHECK: True,
        STUCK_CHECK: True,
        PACED_CHECK: False,
    }
    assert len(report.gap_violations) == 2 and "60.0s apart" in report.gap_violations[0]


def test_a_day_planned_without_pacing_is_not_paced_and_other_numbers_do_not_count() -> None:
    mine, rows = sent(2)
    theirs, other_rows = sent(2, phone=OTHER)
    quotas = {**paced(2, 0.0), **days(plan(2, phone=OTHER))}
    report = evaluate([*rows, *other_rows], quotas, ZONES, [*mine, *theirs], NOON)
    assert checks_ok(report)[PACED_CHECK] and report.tightest is None
