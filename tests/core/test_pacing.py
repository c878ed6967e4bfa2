"""warmup.core.pacing: where one send fits into a day already planned, and the claim's pacing rule
(`next_claim_at`) (pure; hypothesis oracles)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.pacing import HOUR, Pace, next_claim_at, next_window, place_reply, recent_claims, span_end

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SPANS = [(T0, T0 + timedelta(hours=2)), (T0 + timedelta(hours=4), T0 + timedelta(hours=5))]


def test_place_reply_keeps_the_gap_from_the_peers_other_sends() -> None:
    taken = [T0 + timedelta(minutes=10), T0 + timedelta(minutes=12)]
    at = place_reply(T0 + timedelta(minutes=11), SPANS, taken, timedelta(minutes=2), 30)
    assert at == T0 + timedelta(minutes=14)


def test_place_reply_respects_the_hourly_cap_and_moves_to_a_later_window() -> None:
    taken = [T0 + timedelta(minutes=m) for m in range(0, 120, 3)]  # 20 an hour, up to the window's end
    at = place_reply(T0, SPANS, taken, timedelta(minutes=1), 20)
    assert at == SPANS[1][0]  # nothing fits the first window; the second one is free


def test_place_reply_gives_up_when_no_window_time_is_left() -> None:
    assert place_reply(T0 + timedelta(hours=5), SPANS, [], timedelta(minutes=1), 30) is None
    assert place_reply(T0 - timedelta(hours=3), [], [], timedelta(minutes=1), 30) is None


@settings(max_examples=100, deadline=None)
@given(
    earliest=st.integers(0, 6 * 60),
    taken=st.lists(st.integers(0, 6 * 60), max_size=40),
    gap=st.integers(1, 20),
    per_hour=st.integers(1, 12),
)
def test_place_reply_property(earliest: int, taken: list[int], gap: int, per_hour: int) -> None:
    times = [T0 + timedelta(minutes=m) for m in taken]
    start = T0 + timedelta(minutes=earliest)
    at = place_reply(start, SPANS, times, timedelta(minutes=gap), per_hour)

    def fits(candidate: datetime) -> bool:
        """A brute-force oracle: in a window, after `earliest`, the gap kept, no hour over the cap."""
        if candidate < start or not any(low <= candidate < high for low, high in SPANS):
            return False
        if any(abs(t - candidate) < timedelta(minutes=gap) for t in times):
            return False
        points = [*times, candidate]
        hour = timedelta(hours=1)
        # any per_hour + 1 sends within less than an hour all lie in [w, w + 1 h) for the earliest one, w
        return all(
            sum(w <= p < w + hour for p in points) <= per_hour for w in points if w <= candidate < w + hour
        )

    # every input is on whole minutes, so the first fitting instant is too: check each minute of the windows
    minutes = [
        low + timedelta(minutes=m) for low, high in SPANS for m in range((high - low) // timedelta(minutes=1))
    ]
    first = next((m for m in minutes if fits(m)), None)
    assert at == first  # None exactly when no instant fits, else the first one that does


@given(
    st.lists(st.integers(0, 10_000), max_size=12, unique=True).map(sorted),
    st.integers(-100, 10_100),
)
def test_span_end_is_the_end_of_the_span_holding_the_moment(edges: list[int], at: int) -> None:
    """Bisection finds what a scan of the spans finds, for any sorted disjoint half-open spans."""
    base = datetime(2026, 11, 23, tzinfo=UTC)
    spans = [
        (base + timedelta(seconds=edges[i]), base + timedelta(seconds=edges[i + 1]))
        for i in range(0, len(edges) - 1, 2)
    ]
    moment = base + timedelta(seconds=at)
    expected = next((end for start, end in spans if start <= moment < end), None)
    assert span_end(spans, moment) == expected


# --- the claim's pacing rule -------------------------------------------------------------------------


def test_next_claim_at_waits_a_gap_after_the_end_and_an_hour_after_the_oldest_claim_of_the_hour() -> None:
    gap = timedelta(minutes=2)
    free = Pace(busy_since=None, free_at=T0, recent=(T0 - timedelta(minutes=1),))
    assert next_claim_at(free, T0 + timedelta(minutes=1), gap, None) == T0 + gap
    assert next_claim_at(free, T0 + timedelta(minutes=3), gap, None) == T0 + timedelta(minutes=3)
    busy = Pace(busy_since=T0, free_at=None, recent=(T0,))
    assert next_claim_at(busy, T0 + timedelta(hours=5), gap, None) == T0 + timedelta(hours=5) + gap
    assert next_claim_at(busy, T0, timedelta(0), None) > T0  # in flight: never at once, even without a gap
    full = Pace(free_at=T0, recent=(T0 - timedelta(minutes=50), T0 - timedelta(minutes=40), T0))
    assert next_claim_at(full, T0 + gap, gap, 3) == T0 + timedelta(minutes=10)  # the oldest + 1 h
    assert next_claim_at(full, T0 + gap, gap, 4) == T0 + gap


def test_next_window_is_the_open_window_or_the_next_one() -> None:
    assert next_window(SPANS, T0 - timedelta(hours=1)) == SPANS[0]
    assert next_window(SPANS, T0 + timedelta(hours=1)) == SPANS[0]
    assert next_window(SPANS, SPANS[0][1]) == SPANS[1]  # half-open: the end belongs to the next
    assert next_window(SPANS, SPANS[1][1]) is None


_STEP = st.tuples(
    st.integers(0, 900_000_000),  # microseconds to wait before acting
    st.sampled_from(["claim", "end", "come back"]),
)


@settings(max_examples=300, deadline=None)
@given(
    gap_us=st.integers(0, 600_000_000),
    per_hour=st.one_of(st.none(), st.integers(1, 12)),
    steps=st.lists(_STEP, max_size=80),
)
def test_next_claim_at_never_allows_a_send_the_rules_forbid(
    gap_us: int, per_hour: int | None, steps: list[tuple[int, str]]
) -> None:
    """Random claims and ends on one number, each claim taken only when `next_claim_at` answers `now`
    (as the claim does), the pace kept as the store keeps it. Whatever the order: it never answers
    before now, never lets a send start while one is in flight or less than a gap after the last one
    ended, never lets more than ``per_hour`` claims into 60 minutes, and the moment it names for a free
    number is one it allows (a message given that turn is claimed when it comes back)."""
    gap = timedelta(microseconds=gap_us)
    now, pace = T0, Pace()
    starts: list[datetime] = []
    last_end: datetime | None = None
    for wait_us, action in steps:
        now += timedelta(microseconds=wait_us)
        allowed = next_claim_at(pace, now, gap, per_hour)
        assert allowed >= now
        if action == "end":
            if pace.busy_since is not None:
                last_end = now
                pace = Pace(busy_since=None, free_at=now, recent=pace.recent)
            continue
        if action == "come back" and pace.busy_since is None:
            now = allowed
            assert next_claim_at(pace, now, gap, per_hour) == now
        elif allowed > now:
            continue  # not due: the message waits
        assert pace.busy_since is None, "a second send of the number in flight"
        assert last_end is None or now - last_end >= gap
        starts.append(now)
        pace = Pace(busy_since=now, free_at=pace.free_at, recent=(*recent_claims(pace.recent, now), now))
    if per_hour is not None:
        for start in starts:  # the claims in the 60 minutes up to each claim, that one included
            assert sum(start - HOUR < other <= start for other in starts) <= per_hour
