"""warmup.testing.delivery: the demo's delivery check passes only when every finished sending day
delivered its share of the quota, and names the short days with their causes."""

from __future__ import annotations

from datetime import date

from warmup.core.accounting import DayAccount, percent
from warmup.testing.delivery import delivery_report

MON, TUE, WED = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)


def day(local_date: date, quota: int, sent: int, **extra: object) -> DayAccount:
    return DayAccount(1, local_date, 1, "advance", quota, sent=sent, **extra)  # type: ignore[arg-type]


def test_only_finished_sending_days_count() -> None:
    accounts = [day(MON, 10, 10), day(TUE, 0, 0), day(WED, 20, 3, pending=17)]
    report = delivery_report(accounts, {1: "+34600000001"}, {1: WED}, 0.95)
    assert [d.local_date for d in report.days] == [MON]  # Tuesday had no quota, Wednesday is today
    check = report.check()
    assert check.ok and "100%" in check.detail


def test_a_short_day_fails_the_check_with_its_causes() -> None:
    short = day(TUE, 40, 30, skipped={"windows_ended": 8}, failed=2)
    report = delivery_report([day(MON, 10, 10), short], {1: "+34600000001"}, {1: WED}, 0.95)
    check = report.check()
    assert not check.ok
    assert "+34600000001 Tue 2026-11-24 30/40 (75%)" in check.detail
    assert "skipped: windows ended 8" in check.detail and "failed 2" in check.detail
    assert report.total == 40 / 50


def test_percent_never_rounds_a_shortfall_up() -> None:
    assert percent(0.996) == "99%"
    assert percent(1.0) == "100%"
    assert percent(None) == "-"


def test_a_day_that_was_never_planned_fails_the_check() -> None:
    """A stalled scheduler plans nothing, sends nothing and skips nothing: no day is short, yet the
    days it never planned must fail the check rather than pass for a quiet fleet."""
    thu = date(2026, 11, 26)
    accounts = [day(MON, 10, 10)]
    report = delivery_report(accounts, {1: "+34600000001"}, {1: thu}, 0.95, {1: MON})
    check = report.check()
    assert not check.ok
    assert report.unplanned == [(1, TUE), (1, WED)]
    assert "2 number-days ended without ever being planned" in check.detail
    assert "+34600000001 Tue 2026-11-24" in check.detail
    complete = delivery_report(
        [*accounts, day(TUE, 0, 0), day(WED, 5, 5)], {1: "x"}, {1: thu}, 0.95, {1: MON}
    )
    assert complete.check().ok and not complete.unplanned
