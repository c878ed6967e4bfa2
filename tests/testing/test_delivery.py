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
