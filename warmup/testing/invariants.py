"""Check DESIGN invariants 1-3 of a finished run: the simulator's send log against the store.

The simulator's log is the ground truth of what went out; the store says what warmup believes. They
must agree:

* quota (1): per number and LOCAL day (the number's time zone, from the log's ``accepted_at``), the
  sends in the log never exceed that day's quota, and nothing goes out on a day without a plan;
* never twice (2): every ``sent`` row names a provider message id found exactly once in the log and
  in no other row; a log entry no ``sent`` row claims must be explained by an ``unknown`` row of the
  same number, recipient and text (the outcome was ambiguous: it may have gone out), each ``unknown``
  row explaining at most one entry. Anything else in the log was sent by nobody we know of: a double send;
* nothing stuck (3): every message of a local day that is over is sent, failed, skipped or unknown.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.store import ops
from warmup.store.db import READ_ONLY
from warmup.store.models import TERMINAL_STATES

_TERMINAL = frozenset(state.value for state in TERMINAL_STATES)


@dataclass(frozen=True)
class StoredMessage:
    """The columns of one outbound row the checks need."""

    id: int
    number_id: int
    phone: str  # the sender
    timezone: str
    local_date: date
    recipient: str
    text: str
    state: str
    provider_message_id: str | None


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
    over_quota: list[str] = field(default_factory=list)  # "phone local-date: N sends > quota Q"
    duplicates: int = 0
    duplicate_details: list[str] = field(default_factory=list)
    missing_in_log: int = 0  # `sent` rows whose provider id the simulator never issued
    explained_by_unknown: int = 0  # log entries accounted for by an `unknown` row

    @property
    def ok(self) -> bool:
        return self.stuck == 0 and not self.over_quota and self.duplicates == 0 and self.missing_in_log == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["over_quota_number_days"] = len(self.over_quota)
        data["duplicate_details"] = self.duplicate_details[:20]
        data["ok"] = self.ok
        return data


def load_messages(engine: Engine) -> list[StoredMessage]:
    """Every outbound row with its number's phone and time zone."""
    messages, numbers = ops.MESSAGES, ops.NUMBERS
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(
            sa.select(
                messages.c.id,
                messages.c.number_id,
                numbers.c.phone,
                numbers.c.timezone,
                messages.c.local_date,
                messages.c.recipient,
                messages.c.text,
                messages.c.state,
                messages.c.provider_message_id,
            )
            .join(numbers, numbers.c.id == messages.c.number_id)
            .order_by(messages.c.id)
        ).all()
    return [StoredMessage(*row) for row in rows]


def load_quotas(engine: Engine) -> dict[tuple[str, date], int]:
    """(phone, local date) -> that day's quota, from the day plans."""
    plans, numbers = ops.DAY_PLANS, ops.NUMBERS
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(
            sa.select(numbers.c.phone, plans.c.local_date, plans.c.quota).join(
                numbers, numbers.c.id == plans.c.number_id
            )
        ).all()
    return {(row.phone, row.local_date): int(row.quota) for row in rows}


def load_timezones(engine: Engine) -> dict[str, str]:
    """phone -> IANA time zone of every number."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(sa.select(ops.NUMBERS.c.phone, ops.NUMBERS.c.timezone)).all()
    return {row.phone: row.timezone for row in rows}


def check_invariants(engine: Engine, sends: Sequence[Mapping[str, Any]], now: datetime) -> InvariantReport:
    """Compare the simulator's send log (``GET /_sim/sends`` entries) with the store at ``now``."""
    return evaluate(load_messages(engine), load_quotas(engine), load_timezones(engine), sends, now)


def evaluate(
    messages: Iterable[StoredMessage],
    quotas: Mapping[tuple[str, date], int],
    timezones: Mapping[str, str],
    sends: Sequence[Mapping[str, Any]],
    now: datetime,
) -> InvariantReport:
    """The checks themselves, on plain data (so they can be tested without a run)."""
    report = InvariantReport(log_sends=len(sends))
    rows = list(messages)
    today = {phone: ops.local_date_of(zone, now) for phone, zone in timezones.items()}
    for row in rows:
        report.planned += 1
        if row.state == "sent":
            report.sent += 1
        elif row.state == "failed":
            report.failed += 1
        elif row.state == "skipped":
            report.skipped += 1
        elif row.state == "unknown":
            report.unknown += 1
        if row.state not in _TERMINAL:
            if row.local_date < today[row.phone]:
                report.stuck += 1
            else:
                report.in_flight += 1
    _check_quota(report, quotas, timezones, sends)
    _check_once(report, rows, sends)
    return report


def _check_quota(
    report: InvariantReport,
    quotas: Mapping[tuple[str, date], int],
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
        per_day[(phone, ops.local_date_of(zone, datetime.fromisoformat(str(send["accepted_at"]))))] += 1
    for (phone, day), count in sorted(per_day.items()):
        quota = quotas.get((phone, day))
        if quota is None:
            report.over_quota.append(f"{phone} {day}: {count} sends on a day without a plan")
        elif count > quota:
            report.over_quota.append(f"{phone} {day}: {count} sends > quota {quota}")


def _check_once(
    report: InvariantReport, rows: Sequence[StoredMessage], sends: Sequence[Mapping[str, Any]]
) -> None:
    log_ids = Counter(str(send["message_id"]) for send in sends)
    for message_id, count in log_ids.items():
        if count > 1:
            report.duplicates += count - 1
            report.duplicate_details.append(f"provider id {message_id} appears {count} times in the log")
    claimed: Counter[str] = Counter()
    for row in rows:
        if row.state != "sent":
            continue
        if row.provider_message_id is None or row.provider_message_id not in log_ids:
            report.missing_in_log += 1
            continue
        claimed[row.provider_message_id] += 1
    for provider_id, count in claimed.items():
        if count > 1:
            report.duplicates += count - 1
            report.duplicate_details.append(f"provider id {provider_id} recorded by {count} sent rows")
    # A log entry no `sent` row claims is accounted for by an `unknown` row (the outcome was ambiguous)
    # or a `sending` row (in flight: the store was read before the HTTP call returned), one each.
    unknown: Counter[tuple[str, str, str]] = Counter(
        (row.phone, row.recipient, row.text) for row in rows if row.state in ("unknown", "sending")
    )
    unexplained: defaultdict[tuple[str, str, str], list[str]] = defaultdict(list)
    for send in sends:
        message_id = str(send["message_id"])
        if message_id in claimed:
            continue
        key = (str(send["channel"]), str(send["to"]), str(send["body"]))
        if unknown[key] > 0:
            unknown[key] -= 1
            report.explained_by_unknown += 1
        else:
            unexplained[key].append(message_id)
    for (phone, to, _body), ids in unexplained.items():
        report.duplicates += len(ids)
        report.duplicate_details.append(
            f"{phone} -> {to}: {len(ids)} send(s) no message accounts for {ids[:3]}"
        )
