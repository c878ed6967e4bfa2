"""warmup.core.pacing: where one send fits into a day already planned (pure; hypothesis oracles)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.pacing import place_reply, span_end

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
