"""The small value languages of plan files: each parser accepts what authors write, and every
formatter writes something the parser reads back to the same value."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.plan.values import (
    MAX_DURATION,
    DurationRange,
    check_text,
    escaped,
    format_day_span,
    format_duration,
    format_hours,
    format_int_range,
    format_weekdays,
    human_duration,
    parse_day_span,
    parse_duration,
    parse_duration_range,
    parse_hours,
    parse_int_range,
    parse_phone,
    parse_weekdays,
    validate_timezone,
)

durations = st.integers(min_value=0, max_value=int(MAX_DURATION.total_seconds() * 1000)).map(
    lambda ms: timedelta(milliseconds=ms)
)


@settings(max_examples=200)
@given(durations)
def test_duration_format_parses_back(delta: timedelta) -> None:
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        (timedelta(0), "0 s"),
        (timedelta(milliseconds=850), "850 ms"),
        (timedelta(milliseconds=1500), "1.5 s"),
        (timedelta(seconds=40), "40 s"),
        (timedelta(seconds=59.7), "1 min"),
        (timedelta(minutes=1, seconds=45, milliseconds=804), "1 min 46 s"),
        (timedelta(minutes=1, seconds=5), "1 min 05 s"),
        (timedelta(minutes=9, seconds=59.7), "10 min"),
        (timedelta(minutes=27, seconds=13), "27 min"),
        (timedelta(hours=1, minutes=5), "1 h 05 min"),
        (timedelta(hours=3), "3 h"),
        (timedelta(hours=23, minutes=59, seconds=50), "1 d"),
        (timedelta(days=2, hours=3, minutes=20), "2 d 3 h"),
        (timedelta(days=3650), "3650 d"),
        (-timedelta(seconds=40), "-40 s"),
    ],
)
def test_human_duration_is_written_for_people(delta: timedelta, shown: str) -> None:
    assert human_duration(delta) == shown


_HUMAN_UNITS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}


@settings(max_examples=300)
@given(durations)
def test_human_duration_has_two_units_at_most_and_rounds_to_the_smaller(delta: timedelta) -> None:
    parts = re.findall(r"(\d+(?:\.\d+)?) (ms|s|min|h|d)", human_duration(delta))
    assert 1 <= len(parts) <= 2 and " ".join(f"{n} {u}" for n, u in parts) == human_duration(delta)
    shown = sum(float(n) * _HUMAN_UNITS[u] for n, u in parts)
    smallest = min(_HUMAN_UNITS[u] for _, u in parts) * (0.1 if "." in parts[-1][0] else 1)
    if parts[-1][1] == "s" and len(parts) == 1 and shown < 10:
        smallest = 0.1  # under ten seconds, tenths are shown (a whole number drops its ".0")
    assert abs(shown - delta.total_seconds()) <= smallest / 2 + 1e-9


@settings(max_examples=100)
@given(durations, durations)
def test_duration_range_round_trips(a: timedelta, b: timedelta) -> None:
    low, high = min(a, b), max(a, b)
    span = DurationRange(low, high)
    assert parse_duration_range(str(span)) == span


@settings(max_examples=100)
@given(st.frozensets(st.integers(min_value=0, max_value=6), min_size=1))
def test_weekdays_round_trip(days: frozenset[int]) -> None:
    assert parse_weekdays(format_weekdays(days)) == days


@settings(max_examples=100)
@given(st.integers(min_value=0, max_value=1439), st.integers(min_value=1, max_value=1440))
def test_hours_round_trip(start: int, length: int) -> None:
    end = min(start + length, 1440)
    assert parse_hours(format_hours((start, end))) == (start, end)


@settings(max_examples=100)
@given(st.integers(min_value=0, max_value=100_000), st.integers(min_value=0, max_value=100_000))
def test_int_range_round_trip(low: int, high: int) -> None:
    assert parse_int_range(format_int_range((low, high))) == (low, high)


@settings(max_examples=100)
@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=0, max_value=1000))
def test_day_span_round_trip(first: int, extra: int) -> None:
    assert parse_day_span(format_day_span((first, first + extra))) == (first, first + extra)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("40s", timedelta(seconds=40)),
        ("6m", timedelta(minutes=6)),
        ("36h", timedelta(hours=36)),
        ("3d", timedelta(days=3)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("2w", timedelta(days=14)),
        (" 1h 30m ", timedelta(minutes=90)),
        (90, timedelta(seconds=90)),
    ],
)
def test_parse_duration_accepts(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "40", "40x", "m40", "-5s", "1h-30m", True, None, [], float("nan"), "99999999d"]
)
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match=r"duration|longer"):
        parse_duration(text)


def test_duration_range_must_not_run_backwards() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_duration_range("6m..40s")
    assert parse_duration_range("40s") == DurationRange(timedelta(seconds=40), timedelta(seconds=40))


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat", {5}),
        ("Sunday", {6}),
        ("mon,wed,fri", {0, 2, 4}),
        ("fri-mon", {4, 5, 6, 0}),
        ("daily", set(range(7))),
        (["sat", "sun"], {5, 6}),
        ([], set()),
    ],
)
def test_parse_weekdays(text: object, days: set[int]) -> None:
    assert parse_weekdays(text) == frozenset(days)


def test_bad_weekday_suggests_the_near_one() -> None:
    with pytest.raises(ValueError, match=r"unknown weekday 'thurs'.*did you mean 'thu'"):
        parse_weekdays("mon,thurs")
    with pytest.raises(ValueError, match="unknown weekday 'funday'"):
        parse_weekdays("funday")


def test_format_weekdays_is_compact() -> None:
    assert format_weekdays(frozenset({0, 1, 2, 3, 4})) == "mon-fri"
    assert format_weekdays(frozenset({0, 2})) == "mon,wed"
    assert format_weekdays(frozenset(range(7))) == "daily"
    assert format_weekdays(frozenset()) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12:30-09:00", "ends before it starts"),
        ("09:00-09:00", "ends before it starts"),
        ("24:00-24:00", "cannot start at 24:00"),
        ("09:60-10:00", "not a time of day"),
        ("nine-ten", "expected hours"),
        (930, "expected hours"),
    ],
)
def test_parse_hours_rejects(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hours(text)


def test_hours_may_run_to_midnight() -> None:
    assert parse_hours("20:00-24:00") == (1200, 1440)
    assert parse_hours("9-17") == (540, 1020)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "count from 1"),
        ("5-3", "ends before it starts"),
        ("a-b", "expected a plan day"),
        (True, "plan day"),
    ],
)
def test_parse_day_span_rejects(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_day_span(text)


def test_parse_int_range() -> None:
    assert parse_int_range(8) == (8, 8)
    assert parse_int_range("15..40") == (15, 40)
    with pytest.raises(ValueError, match="whole number"):
        parse_int_range("15-40")
    with pytest.raises(ValueError, match="whole number"):
        parse_int_range(True)


def test_parse_phone() -> None:
    assert parse_phone("+55 11 99999-0001") == "+5511999990001"
    assert parse_phone("+1 (202) 555-0101") == "+12025550101"
    for bad in ("5511999990001", "+0123456789", "+12", "+1234567890123456", 5511999990001):
        with pytest.raises(ValueError, match=r"E\.164"):
            parse_phone(bad)


def test_validate_timezone() -> None:
    assert validate_timezone("America/Sao_Paulo") == "America/Sao_Paulo"
    with pytest.raises(ValueError, match="did you mean 'America/Sao_Paulo'"):
        validate_timezone("America/Sao_Paolo")
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        validate_timezone("Mars/Olympus")
    with pytest.raises(ValueError, match="IANA"):
        validate_timezone("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok \x00 nul", "contains a NUL character (U+0000) at position 4: the database cannot store it"),
        ("a \ud800", "contains a lone surrogate (U+D800) at position 3: it is half of a UTF-16 pair"),
        ("\udfff", "contains a lone surrogate (U+DFFF) at position 1"),
        ("bell\x07", "contains a control character (U+0007) at position 5: control characters are invisible"),
        ("esc\x1b[31m", "contains an escape character (U+001B) at position 4"),
        ("del\x7f", "contains a delete character (U+007F) at position 4"),
        ("c1 \x85 next line", "contains a control character (U+0085) at position 4"),
        ("c1 \x9f", "contains a control character (U+009F) at position 4"),
        (
            "dos\r\nline",
            "contains a carriage return (U+000D) at position 4: end lines with a plain line break",
        ),
    ],
)
def test_texts_the_store_or_a_provider_cannot_carry_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_text(text)


def test_chat_texts_keep_what_a_message_may_hold() -> None:
    """Line breaks, tabs, accents, emoji sequences (zero-width joiners are format characters, not
    controls), right-to-left text and non-BMP characters are all carried as they are."""
    for text in ("two\nlines", "a\ttab", "ação ¿qué? 😀", "👨\u200d👩\u200d👧", "שלום", "𝔘𝔫𝔦", "\u2028ls"):
        assert check_text(text) == text


def test_one_line_texts_refuse_line_breaks_and_tabs() -> None:
    with pytest.raises(
        ValueError, match=r"the name contains a line break \(U\+000A\) at position 4: it must be one line"
    ):
        check_text("Ana\nB", allow="", what="the name")
    with pytest.raises(ValueError, match=r"a tab \(U\+0009\) at position 2: tabs are not allowed here"):
        check_text("A\tB", allow="")


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_check_text_accepts_exactly_what_encodes_without_controls(text: str) -> None:
    """Whatever hypothesis draws (surrogates and controls included): accepted iff it encodes as UTF-8
    and holds no control character but tab and line feed; an escaped text is always accepted."""

    def carried(t: str) -> bool:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return not any((ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) and c not in "\t\n" for c in t)

    try:
        check_text(text)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == carried(text)
    assert check_text(escaped(text), allow="") == escaped(text)
