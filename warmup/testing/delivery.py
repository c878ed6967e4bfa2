"""Did each number send what its plan said? The delivery check of a run (the demo, the delivery
benchmark): every finished sending day delivered at least a share of its quota, or the check fails
naming the day and the causes of its shortfall.

Not an invariant (`warmup.testing.invariants`): a fault, a pause or an outage may rightly cost a day part
of its quota. It is a target for a run with none of those: the demo injects no fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from warmup.core.accounting import DayAccount, percent
from warmup.testing.invariants import Check

DELIVERY_CHECK = "every finished sending day delivered its quota"


@dataclass(frozen=True)
class DeliveryReport:
    """The finished sending days of a run and the share of its quota each delivered."""

    days: Sequence[DayAccount]
    phones: Mapping[int, str]
    target: float
    unplanned: Sequence[tuple[int, date]] = ()  # local days that ended without ever being planned

    @property
    def short(self) -> list[DayAccount]:
        """Days under the target, the worst first."""
        under = [d for d in self.days if (d.delivered or 0.0) < self.target]
        return sorted(under, key=lambda d: (d.delivered or 0.0, d.local_date, d.number_id))

    @property
    def total(self) -> float | None:
        """Sent over quota, all the days together."""
        quota = sum(d.quota for d in self.days)
        return sum(d.sent for d in self.days) / quota if quota else None

    @property
    def lowest(self) -> DayAccount | None:
        return min(self.days, key=lambda d: (d.delivered or 0.0, d.local_date), default=None)

    def check(self) -> Check:
        """The pass/fail line: which days fell short and why, or the lowest day when none did."""
        if self.unplanned:
            named = "; ".join(
                f"{self.phones.get(n, f'number {n}')} {d:%a %Y-%m-%d}" for n, d in self.unplanned[:5]
            )
            more = f" (and {len(self.unplanned) - 5} more)" if len(self.unplanned) > 5 else ""
            return Check(
                DELIVERY_CHECK,
                False,
                f"{len(self.unplanned)} number-days ended without ever being planned (nothing was decided, "
                f"nothing sent): {named}{more}",
            )
        if not self.days:
            return Check(DELIVERY_CHECK, True, "no finished sending day to check")
        short = self.short
        if short:
            named = "; ".join(self.describe(d) for d in short[:5])
            more = f" (and {len(short) - 5} more)" if len(short) > 5 else ""
            return Check(
                DELIVERY_CHECK,
                False,
                f"{len(short)} of {len(self.days)} number-days under {percent(self.target)}: {named}{more}",
            )
        lowest = self.lowest
        assert lowest is not None
        return Check(
            DELIVERY_CHECK,
            True,
            f"{len(self.days)} number-days, {percent(self.total)} of their quota in all; "
            f"the lowest {self.describe(lowest)}",
        )

    def describe(self, day: DayAccount) -> str:
        phone = self.phones.get(day.number_id, f"number {day.number_id}")
        why = day.shortfall_text()
        text = f"{phone} {day.local_date:%a %Y-%m-%d} {day.sent}/{day.quota} ({percent(day.delivered)})"
        return f"{text}: {why}" if why else text


def delivery_report(
    accounts: Sequence[DayAccount],
    phones: Mapping[int, str],
    today: Mapping[int, date],
    target: float,
    first_day: Mapping[int, date] | None = None,
) -> DeliveryReport:
    """The report over ``accounts``: only days with a quota that are over (before the number's local
    ``today``) count. With ``first_day`` (each number's first local day of the run), a day between it
    and ``today`` with no account at all was never planned, and fails the check: a stalled scheduler
    must not pass for a quiet fleet."""
    finished = [
        d for d in accounts if d.quota > 0 and d.number_id in today and d.local_date < today[d.number_id]
    ]
    planned = {(d.number_id, d.local_date) for d in accounts}
    unplanned = [
        (number_id, first + timedelta(days=offset))
        for number_id, first in sorted((first_day or {}).items())
        if number_id in today
        for offset in range((today[number_id] - first).days)
        if (number_id, first + timedelta(days=offset)) not in planned
    ]
    return DeliveryReport(finished, phones, target, sorted(unplanned, key=lambda nd: (nd[1], nd[0])))
