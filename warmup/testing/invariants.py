"""The one check of invariants 1-3 (docs/design.md) of a run: the simulator's send log against the store.

One checker for every run that has a simulator: the demo (`warmup.cli.demo`), the tests
(tests/workers/test_embedded.py, tests/testing/test_fleet_processes.py) and the benchmarks (through
`warmup.testing.harness`: benchmarks/chaos.py, benchmarks/send_path.py). The simulator's log is the
ground truth of what went out; the store says what warmup believes. They must agree:

* quota (1): per number and LOCAL day (the number's time zone, from the log's ``accepted_at``), the
  sends in the log never exceed that day's quota, and nothing goes out on a day without a plan. In the
  store, every day plan's ``used`` equals the messages holding a slot (sent, sending, unknown, failed)
  and neither exceeds the quota;
* never twice (2): every provider message id appears once in the log; every ``sent`` row names one
  found in the log and held by no other row; every other log entry is one of an ``unknown`` row (or,
  while the run is live, of a ``sending`` row: its claim commits before its HTTP call) of the same
  number, recipient and text, each row accounting for one entry at most. Anything else in the log was
  sent by nobody we know of: a double send;
* paced (5): in the log, two sends of one number are never closer than the plan's minimum gap of the
  later one's local day (the claim starts a send only a gap after the last one ended);
* nothing stuck (3): once a local day is over, every message of it is sent, failed, skipped or unknown;
  a skipped one has its reason; once the workers have stopped, nothing is left ``sending``.

The rule for ``unknown`` (a crash or an ambiguous answer between claimed and recorded): it counts
against the quota and is never re-sent automatically; whether it went out is read from the log, never
guessed. An unknown the simulator accepted counts as sent: its entry counts in that local day's sends
like any other, matched to the row by number, recipient and text (`explained_by_unknown`). One it did
not accept counts only against the quota: it holds its slot in ``used`` and has no entry. A second
entry for one unknown row is a re-send, reported as a double send.

The store is read by `warmup.store.checks`; the checks themselves (`evaluate`) work on plain data.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any

from warmup.core.localtime import local_date_of
from warmup.store.checks import DayTally, StoredMessage, day_tallies, number_timezones, stored_messages
from warmup.store.db import Engine
from warmup.store.models import TERMINAL_STATES, MessageState

__all__ = [
    "Check",
    "DayTally",
    "InvariantReport",
    "StoredMessage",
    "check_invariants",
    "evaluate",
    "load_messages",
    "load_quotas",
    "load_timezones",
    "slot_problems",
    "unfinished",
]

_TERMINAL = frozenset(state.value for state in TERMINAL_STATES)
_SENT, _SENDING, _UNKNOWN = MessageState.SENT.value, MessageState.SENDING.value, MessageState.UNKNOWN.value

_Key = tuple[str, str, str]  # number, recipient, text: what an `unknown` row and a log entry share

QUOTA_CHECK = "no number exceeded its local-day quota"
TWICE_CHECK = "no message sent twice"
STUCK_CHECK = "no message stuck non-terminal"
PACED_CHECK = "no two sends of a number closer than its minimum gap"


@dataclass(frozen=True)
class Check:
    """One invariant and whether the run kept it, as the demo prints it."""

    name: str
    ok: bool
    detail: str


@dataclass
class InvariantReport:
    """What a run did and every invariant breach found; `ok` when there is none."""

    planned: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    in_flight: int = 0  # planned/queued/sending rows of a day that is not over yet (not a breach)
    log_sends: int = 0
    stuck: int = 0
    stuck_details: list[str] = field(default_factory=list)
    over_quota: list[str] = field(default_factory=list)  # "phone local-date: N sends > quota Q"
    slot_errors: list[str] = field(default_factory=list)  # day plans whose `used` disagrees or is over
    duplicates: int = 0
    duplicate_details: list[str] = field(default_factory=list)
    missing_in_log: int = 0  # `sent` rows whose provider id the simulator never issued
    explained_by_unknown: int = 0  # log entries of `unknown` rows: they went out, so they count as sent
    explained_in_flight: int = 0  # log entries of `sending` rows (the HTTP call had not returned)
    finished: dict[str, int] = field(default_factory=dict)  # messages of days that are over, by state
    sends_per_day: dict[tuple[str, date], int] = field(default_factory=dict)  # the log, per local day
    busiest: float = 0.0  # the highest share of its quota a number used on one local day, per the log
    gap_violations: list[str] = field(default_factory=list)  # "phone: 2 sends 12s apart < gap 20s at ..."
    tightest: float | None = None  # the smallest (gap between two sends / its minimum gap) seen in the log

    @property
    def ok(self) -> bool:
        return (
            self.stuck == 0
            and not self.over_quota
            and not self.slot_errors
            and self.duplicates == 0
            and self.missing_in_log == 0
            and not self.gap_violations
        )

    def checks(self) -> list[Check]:
        """The three invariants as pass/fail lines with a short detail (what the demo prints)."""
        quota = [*self.over_quota, *self.slot_errors]
        twice = list(self.duplicate_details)
        if self.missing_in_log:
            twice.append(
                f"{self.missing_in_log} messages are stored as sent but the simulator never accepted them"
            )
        breakdown = ", ".join(
            f"{self.finished.get(s, 0)} {s}" for s in ("sent", "failed", "skipped", "unknown")
        )
        return [
            Check(
                QUOTA_CHECK,
                not quota,
                "; ".join(quota[:5])
                or f"{len(self.sends_per_day)} number-days checked against the send log, "
                f"busiest at {self.busiest:.0%} of its quota",
            ),
            Check(
                TWICE_CHECK,
                self.duplicates == 0 and self.missing_in_log == 0,
                "; ".join(twice[:5])
                or f"{self.log_sends} sends in the simulator's log, each one stored message, none repeated",
            ),
            Check(
                STUCK_CHECK,
                self.stuck == 0,
                "; ".join(self.stuck_details[:5])
                or f"all {sum(self.finished.values())} messages of finished local days are terminal "
                f"({breakdown})",
            ),
            Check(
                PACED_CHECK,
                not self.gap_violations,
                "; ".join(self.gap_violations[:5])
                or (
                    "the closest two sends of a number were "
                    + (f"{self.tightest:.1f}x their minimum gap apart" if self.tightest else "never paced")
                ),
            ),
        ]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("sends_per_day")  # keyed by (phone, date): not JSON
        data["over_quota_number_days"] = len(self.over_quota)
        data["duplicate_details"] = self.duplicate_details[:20]
        data["stuck_details"] = self.stuck_details[:20]
        data["gap_violation_count"] = len(self.gap_violations)
        data["gap_violations"] = self.gap_violations[:20]
        data["ok"] = self.ok
        return data


def load_messages(engine: Engine) -> list[StoredMessage]:
    """Every outbound row with its number's phone and time zone."""
    return stored_messages(engine)


def load_quotas(engine: Engine) -> dict[tuple[str, date], DayTally]:
    """(phone, local date) -> that day's plan: its quota, `used`, and the slots its messages hold."""
    return {(day.phone, day.local_date): day for day in day_tallies(engine)}


def load_timezones(engine: Engine) -> dict[str, str]:
    """phone -> IANA time zone of every number."""
    return number_timezones(engine)


def check_invariants(
    engine: Engine,
    sends: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    grace: timedelta = timedelta(0),
    stopped: bool = False,
) -> InvariantReport:
    """Compare the simulator's send log (``GET /_sim/sends`` entries) with the store at ``now``.

    For a run whose sends are over (the log is read first). While workers still send, read the store
    FIRST and the log after it, as `FleetHarness.check` does: every row `sent` in the store's snapshot
    is then in the log. See `evaluate` for ``grace`` and ``stopped``.
    """
    messages = load_messages(engine)
    days = load_quotas(engine)
    return evaluate(messages, days, load_timezones(engine), sends, now, grace=grace, stopped=stopped)


def evaluate(
    messages: Iterable[StoredMessage],
    days: Mapping[tuple[str, date], DayTally],
    timezones: Mapping[str, str],
    sends: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    grace: timedelta = timedelta(0),
    stopped: bool = False,
) -> InvariantReport:
    """The checks themselves, on plain data (so they can be tested without a run).

    A local day is over once ``now - grace`` is past it (``grace``: the time the scheduler needs to
    close a day after its midnight). ``stopped``: the workers have stopped, so a `sending` row can never
    finish and is stuck whatever its day.
    """
    report = InvariantReport(log_sends=len(sends))
    rows = list(messages)
    today = {phone: local_date_of(now - grace, zone) for phone, zone in timezones.items()}
    finished: Counter[str] = Counter()
    for row in rows:
        report.planned += 1
        if row.state == _SENT:
            report.sent += 1
        elif row.state == MessageState.FAILED.value:
            report.failed += 1
        elif row.state == MessageState.SKIPPED.value:
            report.skipped += 1
        elif row.state == _UNKNOWN:
            report.unknown += 1
        over = row.local_date < today[row.phone]
        if over:
            finished[row.state] += 1
        problem = unfinished(row.state, row.reason)
        if problem is not None and (over or (stopped and row.state == _SENDING) or row.state in _TERMINAL):
            report.stuck += 1
            report.stuck_details.append(f"message {row.id} of {row.phone} on {row.local_date} {problem}")
        elif row.state not in _TERMINAL:
            report.in_flight += 1
    report.finished = dict(finished)
    _check_quota(report, days, timezones, sends)
    _check_once(report, rows, sends)
    _check_paced(report, days, timezones, sends)
    return report


def _check_paced(
    report: InvariantReport,
    days: Mapping[tuple[str, date], DayTally],
    timezones: Mapping[str, str],
    sends: Sequence[Mapping[str, Any]],
) -> None:
    """Invariant 5: consecutive sends of a number in the log are at least the minimum gap of the later
    send's local day apart."""
    by_phone: defaultdict[str, list[datetime]] = defaultdict(list)
    for send in sends:
        by_phone[str(send["channel"])].append(datetime.fromisoformat(str(send["accepted_at"])))
    for phone, times in sorted(by_phone.items()):
        zone = timezones.get(phone)
        if zone is None:
            continue
        times.sort()
        for before, after in pairwise(times):
            plan = days.get((phone, local_date_of(after, zone)))
            gap = timedelta(seconds=plan.gap_seconds) if plan is not None else timedelta(0)
            if gap <= timedelta(0):
                continue
            ratio = (after - before) / gap
            report.tightest = ratio if report.tightest is None else min(report.tightest, ratio)
            if after - before < gap:
                report.gap_violations.append(
                    f"{phone}: two sends {(after - before).total_seconds():.1f}s apart at "
                    f"{after.isoformat()}, under the minimum gap of {gap.total_seconds():g}s"
                )


def unfinished(state: str, reason: str | None) -> str | None:
    """Why a message has not properly ended (invariant 3), or None: it is not in a terminal state, or it
    was skipped without saying why."""
    if state not in _TERMINAL:
        return f"is {state}"
    if state == MessageState.SKIPPED.value and not reason:
        return "was skipped without a reason"
    return None


def slot_problems(day: DayTally) -> list[str]:
    """What is wrong with a day plan's quota bookkeeping: `used` must equal the messages holding a slot,
    and neither may exceed the quota (an unknown holds its slot whether it went out or not)."""
    where = f"{day.phone} {day.local_date}"
    problems = []
    if day.used != day.held:
        problems.append(f"{where}: used {day.used} but {day.held} messages hold a slot")
    if max(day.used, day.held) > day.quota:
        problems.append(f"{where}: {max(day.used, day.held)} slots taken > quota {day.quota}")
    return problems


def _check_quota(
    report: InvariantReport,
    days: Mapping[tuple[str, date], DayTally],
    timezones: Mapping[str, str],
    sends: Sequence[Mapping[str, Any]],
) -> None:
    per_day: Counter[tuple[str, date]] = Counter()
    for send in sends:
        phone = str(send["channel"])
        zone = timezones.get(phone)
        if zone is None:
            report.over_quota.append(f"{phone}: sent {send.get('message_id')} but is no number of the store")
            continue
        per_day[(phone, local_date_of(datetime.fromisoformat(str(send["accepted_at"])), zone))] += 1
    for (phone, day), count in sorted(per_day.items()):
        plan = days.get((phone, day))
        if plan is None:
            report.over_quota.append(f"{phone} {day}: {count} sends on a day without a plan")
            continue
        if count > plan.quota:
            report.over_quota.append(f"{phone} {day}: {count} sends > quota {plan.quota}")
        if plan.quota:
            report.busiest = max(report.busiest, count / plan.quota)
    report.sends_per_day = dict(per_day)
    for _key, plan in sorted(days.items()):
        report.slot_errors.extend(slot_problems(plan))


def _check_once(
    report: InvariantReport, rows: Sequence[StoredMessage], sends: Sequence[Mapping[str, Any]]
) -> None:
    log_ids = Counter(str(send["message_id"]) for send in sends)
    for message_id, count in log_ids.items():
        if count > 1:
            report.duplicates += count - 1
            report.duplicate_details.append(f"provider id {message_id} appears {count} times in the log")
    claimed: defaultdict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row.state != _SENT:
            continue
        if row.provider_message_id is None or row.provider_message_id not in log_ids:
            report.missing_in_log += 1
            continue
        claimed[row.provider_message_id].append(row.id)
    for provider_id, row_ids in claimed.items():
        if len(row_ids) > 1:
            report.duplicates += len(row_ids) - 1
            report.duplicate_details.append(
                f"messages {', '.join(map(str, row_ids))} share the provider id {provider_id}"
            )
    # Every other log entry must be one of an `unknown` row (it went out after all) or of a `sending`
    # row (in flight), of the same number, recipient and text: one entry per row.
    unknown: Counter[_Key] = Counter((r.phone, r.recipient, r.text) for r in rows if r.state == _UNKNOWN)
    sending: Counter[_Key] = Counter((r.phone, r.recipient, r.text) for r in rows if r.state == _SENDING)
    unexplained: defaultdict[_Key, list[str]] = defaultdict(list)
    for send in sends:
        message_id = str(send["message_id"])
        if message_id in claimed:
            continue
        key = (str(send["channel"]), str(send["to"]), str(send["body"]))
        if unknown[key] > 0:
            unknown[key] -= 1
            report.explained_by_unknown += 1
        elif sending[key] > 0:
            sending[key] -= 1
            report.explained_in_flight += 1
        else:
            unexplained[key].append(message_id)
    for (phone, to, _body), ids in unexplained.items():
        report.duplicates += len(ids)
        report.duplicate_details.append(
            f"{phone} -> {to}: {len(ids)} send(s) no message accounts for {ids[:3]}"
        )
