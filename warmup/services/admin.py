"""What an operator asks of a running fleet: pause, resume, status, why, history, the audit log.

Service functions over the store, shared by the CLI (`warmup.cli.admin_cmd`) and the chat commands
(`warmup.services.chat_commands`), so both act and explain the same way.

Pause and resume go through `store.pauses.pause_numbers` / `resume_numbers`: once a pause returns, no new
send of the number can start (the claim re-checks the state) and its planned messages are skipped. A
resume re-enters gradually (the plan's `risk.resume` policy, from `resumed_on` and `paused_volume`) and
the scheduler re-spreads what is left of the day over the window time left
(`warmup.services.upkeep.respread_rest_of_day`, once per resume, never a burst). Timed pauses (`--for
2h`) are ended by the scheduler too (`warmup.services.upkeep.end_expired_pauses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from warmup.core.accounting import DayAccount, percent
from warmup.core.domain import SIGNALS, DayOutcome, Reading
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of, local_day_bounds
from warmup.core.plan.values import human_duration
from warmup.core.portfolio import PortfolioUse
from warmup.services import metrics
from warmup.services.readings import METER_FAILED
from warmup.store import audit, pauses, portfolios, readings
from warmup.store.accounts import day_accounts
from warmup.store.days import PLANNING_FAILED, get_day_plan, planned_dates
from warmup.store.db import (
    Engine,
    check_database_url,
    current_revision,
    database_problem,
    head_revision,
    make_engine,
    mask_url,
    missing_sqlite_file,
)
from warmup.store.history import day_outcome, list_messages
from warmup.store.models import AuditLog, DayPlan, Number, NumberStatus, OutboundMessage
from warmup.store.numbers import get_number, list_numbers


def open_store(url: str) -> Engine:
    """An engine for `url`, refusing a database that is unreachable, absent or not on the newest schema."""
    check_database_url(url)
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise UserError(
            f"no database at {missing}: create it with `warmup db upgrade` "
            "(or point WARMUP_DATABASE_URL / --database-url at the right one)"
        )
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
    except Exception as exc:
        engine.dispose()
        raise UserError(f"cannot open the database {mask_url(url)}: {database_problem(exc, url)}") from None
    if revision != head_revision():
        engine.dispose()
        raise UserError(
            f"the database {mask_url(url)} is at schema {revision or 'none'}, not {head_revision()}: "
            "run `warmup db upgrade`"
        )
    return engine


# ------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """Which numbers a command is about: one phone, every number of a plan, or all of them."""

    phone: str | None = None
    plan: str | None = None
    all: bool = False

    def __post_init__(self) -> None:
        if (self.phone is not None) + (self.plan is not None) + self.all != 1:
            raise UserError("name exactly one target: a PHONE, --plan NAME or --all")
        if self.phone is not None:
            object.__setattr__(self, "phone", normalize_phone(self.phone))

    def select(self) -> dict[str, Any]:
        """Keyword arguments for `pauses.pause_numbers` / `resume_numbers`."""
        if self.phone is not None:
            return {"phones": [self.phone]}
        if self.plan is not None:
            return {"plan_name": self.plan}
        return {"all_numbers": True}

    def __str__(self) -> str:
        return self.phone or (f"plan {self.plan}" if self.plan else "all numbers")


@dataclass(frozen=True)
class Outcome:
    """What a pause or resume did: the phones it changed, and the others with their state."""

    changed: list[str]
    unchanged: list[tuple[str, str]]  # (phone, state) left as they were


def _outcome(engine: Engine, target: Target, changed_ids: list[int]) -> Outcome:
    numbers = _targeted(engine, target)
    return Outcome(
        [n.phone for n in numbers if n.id in changed_ids],
        [(n.phone, n.state) for n in numbers if n.id not in changed_ids],
    )


def normalize_phone(text: str) -> str:
    """`+55 11 99999-0001`, `5511999990001` or `005511999990001` -> `+5511999990001` (as stored).

    People copy numbers with spaces, dashes and brackets, or without the plus; the store holds E.164.
    """
    cleaned = "".join(ch for ch in text.strip() if ch not in " -().\t")
    if cleaned.startswith("00") and cleaned[2:].isdigit():
        cleaned = "+" + cleaned[2:]
    elif cleaned.isdigit():
        cleaned = "+" + cleaned
    return cleaned


def _check_target(engine: Engine, target: Target) -> None:
    """Unknown phone or plan: a UserError that says which ones exist, before anything changes."""
    if target.phone is not None:
        number_by_phone(engine, target.phone)
    elif target.plan is not None and not list_numbers(engine, plan_name=target.plan):
        plans = sorted({n.plan_name for n in list_numbers(engine)})
        known = f"plans in use: {', '.join(plans)}" if plans else "no number is enrolled yet"
        raise UserError(f"no number uses plan {target.plan!r} ({known})")


def _targeted(engine: Engine, target: Target) -> list[Number]:
    if target.phone is not None:
        number = get_number(engine, phone=target.phone)
        return [number] if number is not None else []
    return list_numbers(engine, plan_name=target.plan)


def pause(
    engine: Engine,
    target: Target,
    *,
    reason: str,
    actor: str,
    now: datetime,
    duration: timedelta | None = None,
) -> Outcome:
    """Pause the targeted active numbers; with `duration` the pause ends by itself at now + duration.

    When this returns, no new send of those numbers starts and today's planned messages are skipped.
    """
    if duration is not None and duration <= timedelta(0):
        raise UserError("a pause duration must be positive, e.g. --for 2h")
    if not reason.strip():
        raise UserError("the reason of a pause cannot be empty: say why, e.g. --reason 'new campaign'")
    _check_target(engine, target)
    if target.all and not list_numbers(engine):
        return Outcome([], [])
    until = now + duration if duration is not None else None
    ids = pauses.pause_numbers(engine, reason=reason, actor=actor, now=now, until=until, **target.select())

    metrics.PAUSES.labels(actor=actor.split(":", 1)[0]).inc(len(ids))
    return _outcome(engine, target, ids)


def resume(
    engine: Engine, target: Target, *, actor: str, now: datetime, reason: str | None = None
) -> Outcome:
    """Resume the targeted paused numbers (the rest of today is re-spread by the scheduler)."""
    _check_target(engine, target)
    if target.all and not list_numbers(engine):
        return Outcome([], [])
    ids = pauses.resume_numbers(engine, actor=actor, now=now, reason=reason, **target.select())
    return _outcome(engine, target, ids)


def end_expired_pauses(engine: Engine, now: datetime) -> list[int]:
    """Resume numbers whose timed pause is over; the scheduler does this every tick (ids resumed)."""
    return pauses.resume_expired(engine, now)


def number_by_phone(engine: Engine, phone: str) -> Number:
    """The enrolled number (the phone may be written with spaces or without the plus)."""
    number = get_number(engine, phone=normalize_phone(phone))
    if number is None or number.id is None:
        raise UserError(
            f"unknown number {phone}: `warmup status --retired` lists the enrolled ones, "
            "`warmup apply FLEET.yaml` enrolls more"
        )
    return number


# ------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class StatusRow:
    """One line of `warmup status`."""

    number_id: int
    phone: str
    plan: str
    plan_day: int
    local_date: date
    quota: int | None  # None: today is not planned yet
    used: int
    sent: int
    replies: int
    reading: Reading | None
    state: str
    paused_reason: str | None
    paused_until: datetime | None


def status(engine: Engine, now: datetime, *, include_retired: bool = False) -> list[StatusRow]:
    """Every number's today (in its own time zone): quota, sends, replies, last reading and state."""
    rows = []
    for number in list_numbers(engine):
        if number.id is None or (number.state == NumberStatus.RETIRED and not include_retired):
            continue
        today = local_date_of(now, number.timezone)
        day = get_day_plan(engine, number.id, today)
        outcome = day_outcome(engine, number.id, today)
        rows.append(
            StatusRow(
                number_id=number.id,
                phone=number.phone,
                plan=number.plan_name,
                plan_day=day.plan_day if day is not None else number.plan_day,
                local_date=today,
                quota=day.quota if day is not None else None,
                used=day.used if day is not None else 0,
                sent=outcome.sent,
                replies=outcome.replies,
                reading=readings.latest_reading(engine, number.id),
                state=number.state,
                paused_reason=number.paused_reason,
                paused_until=number.paused_until,
            )
        )
    return rows


def describe_reading(reading: Reading | None) -> str:
    """The factors, then what Meta says (quality, status, messaging limit) when the reading has it."""
    if reading is None:
        return "none yet"
    meta = "".join(f", {name} {value}" for name in SIGNALS if (value := reading.signal(name)) is not None)
    return (
        f"overall {reading.overall}, lifetime {reading.lifetime}, response {reading.response_rate}, "
        f"contacts {reading.contacts}{meta} ({reading.source}, {reading.taken_at:%Y-%m-%d %H:%M} UTC)"
    )


def describe_state(row: StatusRow) -> str:
    if row.state != NumberStatus.PAUSED:
        return row.state
    until = f" until {row.paused_until:%Y-%m-%d %H:%M} UTC" if row.paused_until else ""
    return f"paused{until}" + (f": {row.paused_reason}" if row.paused_reason else "")


def portfolio_uses(engine: Engine, now: datetime) -> list[PortfolioUse]:
    """Each Meta portfolio's use of its messaging limit at ``now``, by name (for `warmup status`)."""
    return list(portfolios.uses(engine, now).values())


# ---------------------------------------------------------------------------------------------- why


@dataclass(frozen=True)
class Explanation:
    """A day's decision of one number, with its inputs and what happened since, in plain words."""

    phone: str
    local_date: date
    day: DayPlan | None
    reading: Reading | None
    yesterday: DayOutcome | None
    outcome: DayOutcome
    events: list[AuditLog]
    state: str
    today: date | None = None  # the number's local today when asked
    account: DayAccount | None = None  # what became of the day's quota
    sends: Sequence[OutboundMessage] = field(default_factory=list)  # the day's messages
    portfolio: PortfolioUse | None = None  # its Meta portfolio's messaging limit, used now (None: none)
    provider: str = ""  # whapi | simulator | cloud_api: a Cloud API number has no risk meter

    def _no_decision(self) -> str:
        if self.state == NumberStatus.RETIRED:
            return "the number is retired"
        failures = [
            event.detail
            for event in self.events
            if event.action == PLANNING_FAILED
            and (event.detail or {}).get("local_date") == self.local_date.isoformat()
        ]
        if failures:
            error = (failures[-1] or {}).get("error") or "no reason recorded"
            return f"planning it failed: {error}"
        if self.today is not None and self.local_date > self.today:
            return f"that day has not come yet; its local today is {self.today}"
        if self.today is not None and self.local_date < self.today:
            return "nothing is stored for that day: before the number was enrolled, or nothing ran then"
        if self.state == NumberStatus.PAUSED:
            return "the number is paused"
        return "today is not planned yet: is `warmup run` (or `warmup scheduler`) running?"

    def lines(self) -> list[str]:
        head = f"{self.phone} on {self.local_date}"
        if self.day is None:
            return [f"{head}: no decision was made ({self._no_decision()})."]
        day = self.day
        lines = [
            f"{head}: {day.action} at plan day {day.plan_day} -> quota {day.quota} "
            f"(the plan alone allows {day.plan_volume}; at most {day.max_new_contacts} new contacts).",
            self._reading_line(),
            *self._meter_lines(),
        ]
        if self.portfolio is not None:  # a binding cap is also among the rules that fired
            lines.append(f"Portfolio {self.portfolio.describe()}.")
        if self.yesterday is None:
            lines.append("Yesterday: no plan (first day, a pause or the scheduler was not running).")
        else:
            y = self.yesterday
            lines.append(
                f"Yesterday: {y.sent} sent of {y.planned} planned, {y.delivered} delivered, "
                f"{y.failed} failed, {_count(y.replies, 'reply', 'replies')}."
            )
        lines.append("Rules that fired:")
        for reason in day.reasons:
            rule, text = str(reason.get("rule", "?")), str(reason.get("text", ""))
            text = text[len(rule) :].lstrip() if text.startswith(rule) else text  # the rule is named once
            lines.append(f"  - {rule} ({reason.get('action', '?')}): {text}")
        if not day.reasons:
            lines.append("  - none recorded")
        if day.cut:
            lines.append(f"Cut: {day.cut} message(s) did not fit: {day.cut_reason or 'no reason recorded'}.")
        o = self.outcome
        lines.append(
            f"So far: {o.sent} sent, {o.failed} failed, {o.skipped} skipped, {o.unknown} unknown, "
            f"{_count(o.replies, 'reply', 'replies')}; {day.used} of {day.quota} slots used."
        )
        lines.extend(self._accounting())
        for event in self.events:
            if event.action == METER_FAILED:
                continue  # said by the Meter line
            lines.append(
                f"Event {event.at:%H:%M} UTC: {event.action} by {event.actor} {_detail(event.detail)}"
            )
        return lines

    def _meter_failures(self) -> list[AuditLog]:
        return [event for event in self.events if event.action == METER_FAILED]

    def _reading_line(self) -> str:
        if self.reading is None and self._meter_failures():
            return "Reading: none taken that day (the provider's risk meter failed)."
        return f"Reading: {describe_reading(self.reading)}."

    def _meter_lines(self) -> list[str]:
        """A failed read of the provider's meter: what failed, and what the day was decided on instead."""
        if self.reading is not None and self.reading.meter_error and self.provider == "cloud_api":
            return [
                f"Meta: the number's quality rating, status and messaging limit could not be read "
                f"({self.reading.meter_error}); the reading above is the local meter's factors alone, "
                "without Meta's signals."
            ]
        if self.reading is not None and self.reading.meter_error:
            used = "the local meter's" if self.reading.source == "local" else "the provider's last one"
            return [
                f"Meter: the provider's risk meter failed ({self.reading.meter_error}); the reading above "
                f"is {used}, used instead."
            ]
        failures = self._meter_failures()
        if not failures:
            return []
        detail = failures[-1].detail or {}
        return [
            f"Meter: the provider's risk meter failed ({detail.get('error') or 'no reason recorded'}); "
            "no reading was taken that day (plan risk.meter: provider), so the day was decided on "
            f"{detail.get('decided_on') or 'the last stored reading'}, which the plan's stale_after judges."
        ]

    def _accounting(self) -> list[str]:
        """Delivered share of the quota, why the rest was not sent, and whether the plan day advanced
        (the action says what the ramp was told; this says what happened)."""
        a = self.account
        if a is None or a.quota == 0:
            return []
        lines = [f"Delivered: {a.sent} of {a.quota} ({percent(a.delivered)})."]
        if a.missing and a.shortfall():
            pending = " so far" if a.pending else ""
            lines.append(f"Not sent{pending}: {a.missing}: {a.shortfall_text(top=6)}.")
        pace = _pace_line(self.sends, timedelta(seconds=self.day.gap_seconds) if self.day else timedelta(0))
        if pace:
            lines.append(pace)
        if a.advanced is not None:
            after = "advanced" if a.advanced else "did not advance"
            lines.append(f"The plan day {after} after this day (plan day {a.plan_day}).")
        return lines


def _pace_line(messages: Sequence[OutboundMessage], gap: timedelta) -> str:
    """How the day's sends went against the plan's pace: how long a send took (claim to recorded
    outcome: the next one waits for it, then the gap) and how late sends were claimed. Measured, so a
    shortfall of `windows ended` reads with what slowed the day down."""
    spans = [
        (m.claimed_at, m.finished_at, m.scheduled_at)
        for m in messages
        if m.claimed_at is not None and m.finished_at is not None
    ]
    if not spans:
        return ""
    took = sum((end - start for start, end, _ in spans), timedelta(0)) / len(spans)
    late = sum((max(start - planned, timedelta(0)) for start, _, planned in spans), timedelta(0)) / len(spans)
    done = spans
    return (
        f"Pace: {len(done)} sends took {human_duration(took)} each on average (claim to outcome) and were "
        f"claimed {human_duration(late)} after their planned time on average; the plan's minimum gap "
        f"after a send is {human_duration(gap)}."
    )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _detail(detail: dict[str, Any] | None) -> str:
    text = describe_detail(detail)
    return f"({text})" if text else ""


def describe_detail(detail: dict[str, Any] | None) -> str:
    """An audit row's detail as ``key: value`` pairs for people: nested mappings flattened, empty values
    left out, a change recorded as ``[before, after]`` shown as ``before -> after``, timestamps to the
    minute. `warmup audit` and `warmup why` show details this way; JSON or a Python dict is unreadable
    in a terminal and in a chat answer."""
    if not detail:
        return ""
    parts = []
    for key, value in detail.items():
        if isinstance(value, dict):
            parts.append(describe_detail(value))
        elif value not in (None, "", [], {}):
            shown = ", ".join(map(_plain, value)) if isinstance(value, list) else _plain(value)
            if isinstance(value, list) and len(value) == 2 and key not in ("admins", "before"):
                shown = f"{_plain(value[0])} -> {_plain(value[1])}"  # a change recorded as [before, after]
            parts.append(f"{key}: {shown}")
    return "; ".join(part for part in parts if part)


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_plain, value)) + "]"
    if isinstance(value, dict):
        return "[" + describe_detail(value) + "]"
    if isinstance(value, str) and len(value) > 18 and value[10:11] == "T":
        try:  # an ISO timestamp (a pause's `until`): minutes are enough
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is None:
            return f"{moment:%Y-%m-%d %H:%M}"
        return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return "none" if value is None else str(value)


def events_of_day(engine: Engine, number: Number, local_date: date) -> list[AuditLog]:
    """Audit rows of the number during that local day, oldest first."""
    assert number.id is not None
    start, end = local_day_bounds(local_date, number.timezone)
    return [row for row in reversed(audit.list_audit(engine, number.id, limit=500)) if start <= row.at < end]


def explain(engine: Engine, phone: str, now: datetime, local_date: date | None = None) -> Explanation:
    """Why the number got that day's volume (default: its today)."""
    number = number_by_phone(engine, phone)
    assert number.id is not None
    day_date = local_date or local_date_of(now, number.timezone)
    day = get_day_plan(engine, number.id, day_date)
    before = day_date - timedelta(days=1)
    yesterday = day_outcome(engine, number.id, before) if get_day_plan(engine, number.id, before) else None
    return Explanation(
        phone=number.phone,
        local_date=day_date,
        day=day,
        reading=readings.reading_of_day(engine, number.id, day_date),
        yesterday=yesterday,
        outcome=day_outcome(engine, number.id, day_date),
        events=events_of_day(engine, number, day_date),
        state=number.state,
        today=local_date_of(now, number.timezone),
        account=next(iter(day_accounts(engine, [number.id], since=day_date, until=day_date)), None),
        sends=list_messages(engine, number.id, day_date),
        portfolio=_portfolio_use(engine, number, now),
        provider=number.provider,
    )


def _portfolio_use(engine: Engine, number: Number, now: datetime) -> PortfolioUse | None:
    """Where the number's Meta portfolio stands now (None: it has none)."""
    if number.portfolio is None:
        return None
    return portfolios.uses(engine, now, [number.portfolio]).get(number.portfolio)


# ------------------------------------------------------------------------------------------ history


@dataclass(frozen=True)
class HistoryDay:
    """One local day of one number, for `warmup history` and its chart."""

    local_date: date
    plan_day: int
    action: str
    quota: int
    sent: int
    replies: int
    overall: int | None  # that day's reading, overall factor
    paused: bool  # the day's decision was a pause, or a pause happened during the day
    account: DayAccount | None = None  # what became of its quota: delivered share, shortfall by cause


def history(engine: Engine, phone: str, days: int = 60) -> list[HistoryDay]:
    """The number's planned days, oldest first (at most the last `days`)."""
    number = number_by_phone(engine, phone)
    assert number.id is not None
    dates = planned_dates(engine, number.id, days)

    pause_days = {
        local_date_of(row.at, number.timezone)
        for row in audit.list_audit(engine, number.id, limit=5000)
        if row.action in ("pause", "auto_pause")
    }
    accounts = {a.local_date: a for a in day_accounts(engine, [number.id], since=min(dates, default=None))}
    result = []
    for day_date in sorted(dates):
        day = get_day_plan(engine, number.id, day_date)
        assert day is not None
        outcome = day_outcome(engine, number.id, day_date)
        reading = readings.reading_of_day(engine, number.id, day_date)
        result.append(
            HistoryDay(
                local_date=day_date,
                plan_day=day.plan_day,
                action=day.action,
                quota=day.quota,
                sent=outcome.sent,
                replies=outcome.replies,
                overall=reading.overall if reading else None,
                paused=day.action == "pause" or day_date in pause_days,
                account=accounts.get(day_date),
            )
        )
    return result


# -------------------------------------------------------------------------------------------- audit


def audit_log(
    engine: Engine, phone: str | None = None, limit: int = 100
) -> list[tuple[AuditLog, str | None]]:
    """Newest audit rows first (optionally of one number), each with the phone it is about."""
    number_id = number_by_phone(engine, phone).id if phone else None
    phones = {n.id: n.phone for n in list_numbers(engine)}
    return [(row, phones.get(row.number_id)) for row in audit.list_audit(engine, number_id, limit)]
