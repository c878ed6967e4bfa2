"""warmup.store.portfolios and the claim: the numbers of a Meta business portfolio never take more than
its tier of unique business-initiated recipients in any moving 24 h, whatever the concurrency, retries,
unknown outcomes and crashes; a recipient inside their customer-service window or counted already takes
no slot; a message without a slot waits for one inside the day's windows or is skipped with its cause.
Both databases (the `engine` fixture)."""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.invariant_checks import assert_accounting, overfill
from tests.store.helpers import DAY, NOW, add, decision, message, phone
from warmup.core import portfolio as core_portfolio
from warmup.core.domain import Reading, SkipCause
from warmup.core.portfolio import TierSource
from warmup.store import (
    accounts,
    claims,
    days,
    history,
    inbound,
    numbers,
    outcomes,
    portfolios,
    readings,
    tables,
)
from warmup.store.claims import ClaimStatus
from warmup.store.days import DayPacing
from warmup.store.models import metadata
from warmup.store.sends import PlannedSend

ACME = "acme"
HOUR = timedelta(hours=1)


@pytest.fixture
def limit(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Give TIER_50 a smaller limit for the test (the rule is the same; small numbers reach it)."""

    def set_limit(value: int) -> None:
        monkeypatch.setitem(core_portfolio.TIER_LIMITS, "TIER_50", value)

    return set_limit


def cloud(engine: Engine, index: int, portfolio: str | None = ACME) -> int:
    """A Cloud API number of ``portfolio`` (created with tier TIER_50 if the store has no row of it)."""
    if portfolio is not None and portfolio not in portfolios.stored_tiers(engine):
        portfolios.set_portfolio(engine, portfolio, "TIER_50", NOW)
    return numbers.add_number(
        engine,
        phone=phone(index),
        provider="cloud_api",
        token_ref=f"META_TOKEN_{index}",
        plan_name="cloud",
        plan_path="cloud.yaml",
        timezone="UTC",
        phone_number_id=str(1000 + index),
        portfolio=portfolio,
        now=NOW - timedelta(days=10),
    )


def contact(index: int) -> str:
    return f"+55119888{index:05d}"


def day_to(
    engine: Engine,
    number_id: int,
    recipients: list[str],
    *,
    at: datetime = NOW - HOUR,
    local_date: date = DAY,
    windows: list[tuple[datetime, datetime]] | None = None,
) -> list[int]:
    """A planned day of ``number_id`` with one message to each of ``recipients``, due from ``at``: ids."""
    sends = [
        PlannedSend(recipient=r, text=f"hello {i}", scheduled_at=at + timedelta(seconds=i))
        for i, r in enumerate(recipients)
    ]
    pacing = DayPacing(windows=windows)
    assert days.plan_day(engine, number_id, decision(max(len(sends), 1), local_date), sends, pacing=pacing)
    return [m.id for m in history.list_messages(engine, number_id, local_date) if m.id is not None]


def claim_and_send(engine: Engine, message_id: int, now: datetime = NOW) -> claims.ClaimResult:
    """Claim one message; a winner's send is recorded at once (the number's pace is free again)."""
    result = claims.claim(engine, message_id, "w", now)
    if result.claimed:
        assert outcomes.record_sent(engine, message_id, f"wamid.{message_id}", now)
    return result


def used_now(engine: Engine, now: datetime = NOW, name: str = ACME) -> int:
    return portfolios.uses(engine, now, [name])[name].used


_EVENTS = itertools.count()


def wrote(engine: Engine, number_id: int, who: str, at: datetime) -> None:
    """``who`` wrote to the number at ``at`` (their customer-service window opens)."""
    assert inbound.add_inbound(
        engine,
        number_id,
        kind="message",
        provider_message_id=f"in-{next(_EVENTS)}",
        received_at=at,
        chat_phone=who,
        text="hi",
    )


# ------------------------------------------------------------------------------------------ the rule


def test_new_recipients_take_slots_until_the_tier_is_reached_then_are_skipped_with_the_cause(
    engine: Engine, limit: Callable[[int], None]
) -> None:
    limit(3)
    number = cloud(engine, 1)
    ids = day_to(engine, number, [contact(i) for i in range(5)])
    statuses = [claim_and_send(engine, m).status for m in ids]
    assert statuses == [ClaimStatus.CLAIMED] * 3 + [ClaimStatus.PORTFOLIO_LIMIT] * 2
    skipped = message(engine, ids[3])
    assert (skipped.state, skipped.cause) == ("skipped", SkipCause.PORTFOLIO.value)
    assert "portfolio acme is at its limit: 3 of TIER_50" in (skipped.reason or "")
    assert "after the day's last send window" in (skipped.reason or "")  # the next slot frees tomorrow
    assert used_now(engine) == 3
    [account] = accounts.day_accounts(engine, [number])
    assert account.skipped == {SkipCause.PORTFOLIO.value: 2}
    assert ("skipped: portfolio limit", 2) in account.shortfall()
    assert_accounting(engine)


def test_writing_again_to_a_counted_recipient_takes_no_new_slot_from_any_number_of_the_portfolio(
    engine: Engine, limit: Callable[[int], None]
) -> None:
    limit(3)
    a, b = cloud(engine, 1), cloud(engine, 2)
    first = day_to(engine, a, [contact(0), contact(1), contact(2), contact(0)])
    second = day_to(engine, b, [contact(1), contact(2), contact(3)])
    assert [claim_and_send(engine, m).status for m in first] == [ClaimStatus.CLAIMED] * 4
    assert [claim_and_send(engine, m).status for m in second] == [
        ClaimStatus.CLAIMED,
        ClaimStatus.CLAIMED,
        ClaimStatus.PORTFOLIO_LIMIT,  # a fourth recipient: the portfolio is full
    ]
    assert used_now(engine) == 3


def test_another_portfolio_and_numbers_without_one_are_not_held_back(
    engine: Engine, limit: Callable[[int], None]
) -> None:
    limit(1)
    a = cloud(engine, 1)
    other = cloud(engine, 2, portfolio="other")
    alone = cloud(engine, 3, portfolio=None)
    whapi = add(engine, phone=phone(4))
    for number in (a, other, alone, whapi):
        ids = day_to(engine, number, [contact(7), contact(8)])
        expected = [
            ClaimStatus.CLAIMED,
            ClaimStatus.PORTFOLIO_LIMIT if number in (a, other) else ClaimStatus.CLAIMED,
        ]
        assert [claim_and_send(engine, m).status for m in ids] == expected
    assert used_now(engine) == used_now(engine, name="other") == 1


def test_a_recipient_inside_their_service_window_with_that_number_is_not_counted(
    engine: Engine, limit: Callable[[int], None]
) -> None:
    limit(2)
    a, b = cloud(engine, 1), cloud(engine, 2)
    wrote(engine, a, contact(9), NOW - 2 * HOUR)  # inside the window
    wrote(engine, a, contact(8), NOW - timedelta(hours=23, minutes=55))  # inside 24 h, but in the margin
    wrote(engine, a, contact(7), NOW - 25 * HOUR)  # the window has closed
    ids = day_to(engine, a, [contact(9), contact(0), contact(9), contact(1), contact(8), contact(7)])
    assert [claim_and_send(engine, m).status for m in ids] == [
        ClaimStatus.CLAIMED,  # a reply inside the window: free
        ClaimStatus.CLAIMED,
        ClaimStatus.CLAIMED,  # still free
        ClaimStatus.CLAIMED,  # the second counted recipient
        ClaimStatus.PORTFOLIO_LIMIT,  # 5 minutes before the window closes is too late to rely on it
        ClaimStatus.PORTFOLIO_LIMIT,
    ]
    [to_b] = day_to(engine, b, [contact(9)])  # contact 9 wrote to A, not to B: business-initiated for B
    assert claim_and_send(engine, to_b).status is ClaimStatus.PORTFOLIO_LIMIT
    assert used_now(engine) == 2
    with engine.connect() as conn:
        counted = conn.execute(sa.select(tables.PORTFOLIO_SENDS.c.recipient)).scalars().all()
    assert sorted(counted) == [contact(0), contact(1)]


def test_a_template_after_131047_takes_a_slot_the_claim_did_not(
    engine: Engine, limit: Callable[[int], None]
) -> None:
    """The claim saw the recipient inside their window and counted nothing; Meta refused the text as
    outside it (131047), so the template that follows takes a slot first, or does not go out."""
    limit(1)
    a = cloud(engine, 1)
    wrote(engine, a, contact(9), NOW - 2 * HOUR)
    wrote(engine, a, contact(8), NOW - 2 * HOUR)
    first, second = day_to(engine, a, [contact(9), contact(8)])
    assert claims.claim(engine, first, "w", NOW).claimed
    assert used_now(engine) == 0  # inside the window: free at the claim
    assert portfolios.count_late(engine, a, first, contact(9), NOW)
    assert portfolios.count_late(engine, a, first, contact(9), NOW)  # asked again: counted once
    assert used_now(engine) == 1
    assert outcomes.record_sent(engine, first, "wamid.t", NOW)
    assert claims.claim(engine, second, "w", NOW + HOUR).claimed
    assert not portfolios.count_late(engine, a, second, contact(8), NOW + HOUR)  # the tier is used up
    assert used_now(engine, NOW + HOUR) == 1
    no_portfolio = cloud(engine, 2, portfolio=None)
    assert portfolios.count_late(engine, no_portfolio, 10**6, contact(7), NOW)


# ------------------------------------------------------------------------------------------- outcomes


OUTCOMES: dict[str, tuple[Callable[[Engine, int, datetime], bool], bool]] = {
    # outcome -> (record it at a time, whether the recipient keeps counting)
    "sent": (lambda e, m, at: outcomes.record_sent(e, m, f"wamid.{m}", at), True),
    "unknown": (lambda e, m, at: outcomes.record_unknown(e, m, "read timeout", at), True),
    "failed": (lambda e, m, at: outcomes.record_failed(e, m, "131026 undeliverable", at), False),
    "skipped": (lambda e, m, at: outcomes.record_skipped(e, m, "retries exhausted", at), False),
    "retry": (lambda e, m, at: outcomes.release_for_retry(e, m, at + HOUR, "130429", at), False),
    "given back": (lambda e, m, at: outcomes.give_back(e, m, "batch ran long", at), False),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_a_send_that_did_not_go_out_gives_its_slot_back_and_an_unknown_one_keeps_it(
    engine: Engine, limit: Callable[[int], None], outcome: str
) -> None:
    limit(1)
    a, b = cloud(engine, 1), cloud(engine, 2)
    [first] = day_to(engine, a, [contact(0)])
    [second] = day_to(engine, b, [contact(1)])
    assert claims.claim(engine, first, "w", NOW).claimed
    record, keeps = OUTCOMES[outcome]
    assert record(engine, first, NOW)
    assert used_now(engine) == (1 if keeps else 0)
    second_claim = claim_and_send(engine, second)
    assert second_claim.status is (ClaimStatus.PORTFOLIO_LIMIT if keeps else ClaimStatus.CLAIMED)
    if outcome in ("retry", "given back"):  # back in the queue: its claim now finds the portfolio full
        result = claims.claim(engine, first, "w", NOW + 2 * HOUR)
        assert result.status is ClaimStatus.PORTFOLIO_LIMIT
    assert used_now(engine) == 1
    assert_accounting(engine)


def test_a_crashed_claim_counts_as_unknown_until_it_leaves_the_moving_24_h(
    engine: Engine, limit: Callable[[int], None]
) -> None:
    limit(1)
    a, b = cloud(engine, 1), cloud(engine, 2)
    [lost] = day_to(engine, a, [contact(0)])
    assert claims.claim(engine, lost, "dead worker", NOW).claimed  # ... and the worker dies
    assert outcomes.recover_stale(engine, NOW + timedelta(minutes=10), NOW + timedelta(minutes=10)) == 1
    assert message(engine, lost).state == "unknown"
    [today] = day_to(engine, b, [contact(1)])
    assert claim_and_send(engine, today, NOW + HOUR).status is ClaimStatus.PORTFOLIO_LIMIT
    tomorrow = DAY + timedelta(days=1)
    late, on_time = day_to(engine, b, [contact(2), contact(3)], at=NOW + 23 * HOUR, local_date=tomorrow)
    assert (
        claims.claim(engine, late, "w", NOW + timedelta(hours=23, minutes=59)).status is ClaimStatus.NOT_DUE
    )
    assert used_now(engine, NOW + 24 * HOUR) == 0  # the unknown send no longer counts: it aged out
    assert claim_and_send(engine, late, NOW + 24 * HOUR).claimed
    assert claim_and_send(engine, on_time, NOW + 25 * HOUR).status is ClaimStatus.PORTFOLIO_LIMIT


# ------------------------------------------------------------------------------------------ waiting


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NOW.tzinfo)


def _windows(day: date, *spans: tuple[int, int]) -> list[tuple[datetime, datetime]]:
    return [(_at(day, start), _at(day, end)) for start, end in spans]


@pytest.mark.parametrize(
    ("counted_at", "expected"),
    [
        (18, (18, 20)),  # the slot frees at 18:00, inside the evening window: waits until then
        (15, (17, 20)),  # frees at 15:00, between the windows: waits for the evening window to open
        (21, None),  # frees at 21:00, after the day's last window: skipped now
    ],
)
def test_a_message_without_a_slot_waits_for_it_if_a_window_of_its_day_is_open_then(
    engine: Engine, limit: Callable[[int], None], counted_at: int, expected: tuple[int, int] | None
) -> None:
    limit(1)
    a, b = cloud(engine, 1), cloud(engine, 2)
    yesterday = DAY - timedelta(days=1)
    [earlier] = day_to(engine, a, [contact(0)], at=_at(yesterday, counted_at) - HOUR, local_date=yesterday)
    assert claim_and_send(engine, earlier, _at(yesterday, counted_at)).claimed
    windows = _windows(DAY, (9, 12), (17, 20))
    [waiting] = day_to(engine, b, [contact(1)], at=_at(DAY, 10), windows=windows)
    result = claims.claim(engine, waiting, "w", _at(DAY, 10))
    row = message(engine, waiting)
    if expected is None:
        assert result.status is ClaimStatus.PORTFOLIO_LIMIT
        assert (row.state, row.cause) == ("skipped", SkipCause.PORTFOLIO.value)
        return
    start, end = _at(DAY, expected[0]), _at(DAY, expected[1])
    assert (result.status, result.due_at) == (ClaimStatus.NOT_DUE, start)
    assert (row.state, row.not_before, row.window_end) == ("planned", start, end)
    assert "waits until" in (result.reason or "")
    assert claims.claim(engine, waiting, "w", start - timedelta(seconds=1)).status is ClaimStatus.NOT_DUE
    assert claim_and_send(engine, waiting, start).claimed
    assert used_now(engine, start) == 1


# -------------------------------------------------------------------------------------------- tiers


def test_the_tier_set_by_hand_wins_then_meta_s_newest_then_the_smallest_is_assumed(engine: Engine) -> None:
    portfolios.set_portfolio(engine, ACME, None, NOW)
    a, b = cloud(engine, 1), cloud(engine, 2)
    tier = portfolios.uses(engine, NOW)[ACME].tier
    assert (tier.name, tier.source) == ("TIER_250", TierSource.ASSUMED)
    assert "assumed" in portfolios.uses(engine, NOW)[ACME].describe()
    for number, tier_name, hours in ((a, "TIER_1K", 30), (b, "TIER_2K", 5), (a, "TIER_10K", 50)):
        reading = Reading(3, 3, 3, 3, NOW - hours * HOUR, source="cloud_api", tier=tier_name)
        readings.save_reading(engine, number, DAY, reading)
    tier = portfolios.uses(engine, NOW)[ACME].tier
    assert (tier.name, tier.source, tier.read_at) == ("TIER_2K", TierSource.META, NOW - 5 * HOUR)
    portfolios.set_portfolio(engine, ACME, "1k", NOW)
    assert portfolios.stored_tiers(engine) == {ACME: "TIER_1K"}
    tier = portfolios.uses(engine, NOW)[ACME].tier
    assert (tier.name, tier.source, tier.limit) == ("TIER_1K", TierSource.FLEET, 1000)


def test_a_claim_limits_by_meta_s_tier_when_none_is_set_by_hand(engine: Engine) -> None:
    portfolios.set_portfolio(engine, ACME, None, NOW)
    number = cloud(engine, 1)
    readings.save_reading(
        engine, number, DAY, Reading(3, 3, 3, 3, NOW - HOUR, source="cloud_api", tier="TIER_50")
    )
    ids = day_to(engine, number, [contact(i) for i in range(52)])
    statuses = Counter(claim_and_send(engine, m).status for m in ids)
    assert statuses == {ClaimStatus.CLAIMED: 50, ClaimStatus.PORTFOLIO_LIMIT: 2}


def test_a_number_naming_a_portfolio_the_store_has_no_row_of_gets_one_with_the_assumed_tier(
    engine: Engine,
) -> None:
    number = cloud(engine, 1, portfolio=None)
    with engine.begin() as conn:  # enrolled by code, behind the fleet sync's back
        conn.execute(sa.update(tables.NUMBERS).where(tables.NUMBERS.c.id == number).values(portfolio="ghost"))
    [m] = day_to(engine, number, [contact(0)])
    assert claim_and_send(engine, m).claimed
    assert portfolios.stored_tiers(engine) == {"ghost": None}
    assert used_now(engine, name="ghost") == 1


def test_dropping_a_portfolio_frees_the_numbers_still_naming_it(engine: Engine) -> None:
    number = cloud(engine, 1)
    assert portfolios.drop_portfolio(engine, ACME) == 1
    assert portfolios.stored_tiers(engine) == {}
    got = numbers.get_number(engine, number)
    assert got is not None and got.portfolio is None


def test_only_a_cloud_api_number_belongs_to_a_portfolio(engine: Engine) -> None:
    with pytest.raises(tables.InvalidWrite, match="only a cloud_api number"):
        numbers.add_number(
            engine,
            phone=phone(1),
            provider="whapi",
            token_ref="WHAPI_TOKEN_1",
            plan_name="p",
            plan_path="p.yaml",
            timezone="UTC",
            portfolio=ACME,
        )
    with pytest.raises(tables.InvalidWrite, match="unknown tier"):
        portfolios.set_portfolio(engine, ACME, "TIER_3K", NOW)


# ------------------------------------------------------------------------------------------ fast path


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The message ids that took the checked path."""
    seen: list[int] = []
    real = claims._checked

    def spy(conn: Any, message_id: int, worker_id: str, now: datetime) -> claims.ClaimResult:
        seen.append(message_id)
        return real(conn, message_id, worker_id, now)

    monkeypatch.setattr(claims, "_checked", spy)
    return seen


def test_numbers_without_a_portfolio_stay_on_postgresql_s_one_statement(
    engine: Engine, checked: list[int]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has only the checked path")
    plain = day_to(engine, cloud(engine, 1, portfolio=None), [contact(0), contact(1)])
    whapi = day_to(engine, add(engine, phone=phone(2)), [contact(0)])
    counted = day_to(engine, cloud(engine, 3), [contact(0)])
    assert claims.claim(engine, plain[0], "w", NOW).claimed
    assert claims.claim_many(engine, [whapi[0], counted[0]], "w", NOW)[counted[0]].claimed
    assert checked == [counted[0]]  # the portfolio number's claim, and only it, took the checked path
    assert used_now(engine) == 1


# ------------------------------------------------------------------------------------------- races

RACE_THREADS = 6
RACE_PER_NUMBER = 40
SHARED = 10  # recipients both numbers write to


@pytest.mark.timeout(240)
def test_concurrent_claims_on_two_numbers_never_count_more_than_the_tier(engine: Engine) -> None:
    # TIER_50 as Meta has it: 70 distinct recipients (10 of them written by both numbers) for 50 slots
    a, b = cloud(engine, 1), cloud(engine, 2)
    to_a = [contact(i) for i in range(RACE_PER_NUMBER)]
    to_b = [contact(i) for i in range(SHARED)] + [contact(100 + i) for i in range(RACE_PER_NUMBER - SHARED)]
    everything = day_to(engine, a, to_a) + day_to(engine, b, to_b)
    results: list[tuple[int, ClaimStatus]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(RACE_THREADS)

    def run(thread: int) -> None:
        rng = random.Random(thread)
        todo = everything[:]
        mine: list[tuple[int, ClaimStatus]] = []
        try:
            barrier.wait()
            for _ in range(500):  # a number has one send in flight: what waited for it is asked again
                rng.shuffle(todo)
                waiting = []
                for at in range(0, len(todo), 4):
                    chunk = todo[at : at + 4]
                    answers = (
                        claims.claim_many(engine, chunk, f"t{thread}", NOW)
                        if thread % 2
                        else {m: claims.claim(engine, m, f"t{thread}", NOW) for m in chunk}
                    )
                    for m, answer in answers.items():
                        mine.append((m, answer.status))
                        if answer.claimed:
                            assert outcomes.record_sent(engine, m, f"wamid.{m}", NOW)
                        elif answer.status is ClaimStatus.NOT_DUE:
                            waiting.append(m)
                if not waiting:
                    break
                todo = waiting
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(RACE_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(200)
    assert not any(thread.is_alive() for thread in threads), "a claim hung"
    assert errors == []
    decided = [(m, s) for m, s in results if s not in (ClaimStatus.NOT_CLAIMABLE, ClaimStatus.NOT_DUE)]
    assert {s for _, s in decided} <= {ClaimStatus.CLAIMED, ClaimStatus.PORTFOLIO_LIMIT}
    assert Counter(m for m, _ in decided) == Counter(everything)  # each message decided exactly once
    with engine.connect() as conn:
        sent = (
            conn.execute(sa.select(tables.MESSAGES.c.recipient).where(tables.MESSAGES.c.state == "sent"))
            .scalars()
            .all()
        )
        counted = conn.execute(sa.select(tables.PORTFOLIO_SENDS.c.recipient)).scalars().all()
    assert len(set(sent)) == 50  # never more than the tier; and every slot was used
    assert sorted(counted) == sorted(sent)
    assert used_now(engine) == 50
    assert_accounting(engine)


# -------------------------------------------------------------------------------- against a model

RECIPIENTS = 5
LIMIT = 3


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    send = st.tuples(
        st.just("send"),
        st.integers(0, 1),
        st.integers(0, RECIPIENTS - 1),
        st.sampled_from(["sent", "unknown", "failed", "skipped", "retry", "crash"]),
    )
    wrote_ = st.tuples(
        st.just("wrote"), st.integers(0, 1), st.integers(0, RECIPIENTS - 1), st.integers(0, 1500)
    )
    wait = st.tuples(st.just("wait"), st.integers(1, 30 * 60))
    return draw(st.lists(st.one_of(send, send, wrote_, wait), min_size=1, max_size=25))


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


class _Model:
    """What the portfolio's limit should say, written out plainly: the recipients counted (time of each
    counted send), the customer-service windows opened."""

    def __init__(self) -> None:
        self.counted: dict[int, tuple[str, datetime]] = {}  # message id -> (recipient, at)
        self.ever: dict[int, tuple[str, datetime]] = {}  # the same, never purged (for `peak`)
        self.wrote: list[tuple[int, str, datetime]] = []

    def expect(self, number: int, who: str, now: datetime) -> tuple[ClaimStatus, bool]:
        """The claim's answer, and whether the send counts."""
        margin = portfolios.SERVICE_MARGIN
        if any(n == number and w == who and at > now - (24 * HOUR - margin) for n, w, at in self.wrote):
            return ClaimStatus.CLAIMED, False
        last: dict[str, datetime] = {}
        for recipient, at in self.counted.values():
            if at > now - 24 * HOUR:
                last[recipient] = max(at, last.get(recipient, at))
        if who in last or len(last) < LIMIT:
            return ClaimStatus.CLAIMED, True
        free_at = sorted(last.values())[len(last) - LIMIT] + 24 * HOUR
        day_end = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
        return (ClaimStatus.NOT_DUE if free_at < day_end else ClaimStatus.PORTFOLIO_LIMIT), False

    def peak(self) -> int:
        """The most distinct recipients counted in any moving 24 h (the worst span ends at a send)."""
        times = [at for _, at in self.ever.values()]
        return max(
            (len({r for r, at in self.ever.values() if end - 24 * HOUR < at <= end}) for end in times),
            default=0,
        )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_steps())
def test_the_claim_agrees_with_a_plain_model_of_the_limit_and_never_passes_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, steps: list[tuple[Any, ...]]
) -> None:
    monkeypatch.setitem(core_portfolio.TIER_LIMITS, "TIER_50", LIMIT)
    _empty(engine)
    ids = [cloud(engine, 1), cloud(engine, 2)]
    model = _Model()
    now = NOW.replace(hour=0)
    planned: set[tuple[int, date]] = set()
    for step in steps:
        if step[0] == "wait":
            now += timedelta(minutes=step[1])
            continue
        number, who = ids[step[1]], contact(step[2])
        if step[0] == "wrote":
            at = now - timedelta(minutes=step[3])
            wrote(engine, number, who, at)
            model.wrote.append((number, who, at))
            continue
        if (number, now.date()) not in planned:
            assert days.plan_day(engine, number, decision(1000, now.date()), [])
            planned.add((number, now.date()))
        [m] = overfill(engine, number, now.date(), [PlannedSend(recipient=who, text="hi", scheduled_at=now)])
        expected, counts = model.expect(number, who, now)
        result = claims.claim(engine, m, "w", now)
        assert result.status is expected, (step, result.reason)
        if not result.claimed:
            continue
        if counts:  # the claim also purges what is too old to count for anything
            model.counted = {k: v for k, v in model.counted.items() if v[1] >= now - portfolios.KEEP}
            model.counted[m] = model.ever[m] = (who, now)
        outcome = step[3]
        if outcome == "crash":  # claimed, never recorded: the stale claim is recovered as unknown
            assert outcomes.recover_stale(engine, now + timedelta(seconds=1), now) == 1
        else:
            record, keeps = OUTCOMES[outcome]
            assert record(engine, m, now)
            if not keeps:
                model.counted.pop(m, None)
                model.ever.pop(m, None)
        sends = tables.PORTFOLIO_SENDS
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.select(sends.c.message_id, sends.c.recipient)).all())
        assert stored == {k: r for k, (r, _) in model.counted.items()}
    assert model.peak() <= LIMIT
    assert used_now(engine, now) == len({r for r, at in model.counted.values() if at > now - 24 * HOUR})
    assert_accounting(engine)
