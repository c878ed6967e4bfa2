"""Message pools and contact lists: validation with located errors, conditions, variables, and the pure
text chooser."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.paths import PLANS
from warmup.files.content import (
    NO_REPEAT,
    Contact,
    Entry,
    MessagePool,
    When,
    entries,
    first_name_of,
    load_contacts,
    load_pool,
    weekday_name,
)
from warmup.files.problems import PlanError

MESSAGES = PLANS / "messages"
CONTACTS = PLANS / "contacts"
LANGUAGES = ("en", "pt", "es")

SPAMMY = (
    "http",
    "www.",
    "click here",
    "offer",
    "discount",
    "promo",
    "buy now",
    "free shipping",
    "$",
    "%",
    "oferta",
)

TIME_WORDS = {
    "en": ("morning", "afternoon", "evening", "tonight", "lunch", "dinner", "good night"),
    "es": ("buenos días", "buenas tardes", "buenas noches", "esta mañana", "comer hoy", "cena", "esta noche"),
    "pt": ("bom dia", "boa tarde", "boa noite", "hoje cedo", "almoço", "almoçar", "jantar"),
}
"""Words that tie an opener to a time of day: a shipped opener holding one needs an ``hours`` condition."""

DAY_WORDS = {
    "en": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "weekend"),
    "es": (
        "lunes",
        "martes",
        "miércoles",
        "jueves",
        "viernes",
        "sábado",
        "domingo",
        "finde",
        "fin de semana",
    ),
    "pt": ("segunda", "terça", "quarta", "quinta", "sexta", "sábado", "domingo", "fim de semana"),
}
"""Words that tie an opener to days of the week: a shipped opener holding one needs ``weekdays``."""


def _texts(pool: MessagePool) -> list[str]:
    return [entry.text for entry in pool.openers + pool.replies + pool.followups]


@pytest.mark.parametrize("language", LANGUAGES)
def test_shipped_pools_are_valid_and_large_enough(language: str) -> None:
    pool = load_pool(MESSAGES / f"casual-{language}.yaml")
    assert pool.language.startswith(language)
    assert len(pool.openers) >= 150
    assert len(pool.replies) >= 75
    assert len(pool.followups) >= 20
    for text in _texts(pool):
        assert not any(word in text.lower() for word in SPAMMY), text
        assert len(text) <= 80, text
    assert sum(entry.when is not None for entry in pool.openers) >= 30
    assert sum("first_name" in entry.parts for entry in pool.openers) >= 10


@pytest.mark.parametrize("language", LANGUAGES)
def test_shipped_openers_that_name_a_time_or_a_day_carry_the_condition(language: str) -> None:
    """The bug this guards against: "Hope your Monday isn't too rough" sent on a Saturday."""
    pool = load_pool(MESSAGES / f"casual-{language}.yaml")
    for entry in pool.openers:
        text = entry.text.lower()
        if any(word in text for word in TIME_WORDS[language]):
            assert entry.when is not None and entry.when.hours is not None, entry.text
        if any(word in text for word in DAY_WORDS[language]):
            assert entry.when is not None and entry.when.weekdays is not None, entry.text
    for entry in pool.replies + pool.followups:
        assert entry.timeless and "first_name" not in entry.parts, entry.text  # sent without a time or name


@pytest.mark.parametrize("language", LANGUAGES)
def test_shipped_texts_read_well_with_and_without_a_name(language: str) -> None:
    pool = load_pool(MESSAGES / f"casual-{language}.yaml")
    for entry in pool.openers:
        for day in range(7):
            for name in (None, "Ana"):
                text = entry.render(name, weekday_name(pool.language, day))
                assert text and text == text.strip() and "  " not in text, (entry.text, text)
                assert not re.search(r"\s[,.!?]|^[,.!?]|,,", text), (entry.text, text)
                assert "{" not in text and "}" not in text, text
                assert text[0] == text[0].upper() or text[0] in "¿¡", text


def test_shipped_pools_do_not_share_texts_across_languages() -> None:
    texts = [set(_texts(load_pool(MESSAGES / f"casual-{lang}.yaml"))) for lang in LANGUAGES]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]


def test_pool_problems_are_located(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("language: English\nopeners:\n  - Hi!\n  - '   '\n  - hi!\nreplies: []\nfollowup: [x]\n")
    with pytest.raises(PlanError) as info:
        load_pool(path)
    found = [(p.line, p.col, p.field) for p in info.value.problems]
    assert found == [
        (1, 11, "language"),
        (4, 5, "openers[1]"),
        (5, 5, "openers[2]"),
        (6, 10, "replies"),
        (7, 1, "followup"),
    ]
    messages = [p.message for p in info.value.problems]
    assert "same text as openers[0]" in messages[2]
    assert "did you mean 'followups'?" in messages[4]


def test_bad_conditions_and_variables_are_located(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(
        "language: en\n"
        "openers:\n"
        "  - Hi {frist_name}!\n"  # 3
        "  - {text: Hope your Monday is fine, when: {weekdays: [mon, funday]}}\n"  # 4
        "  - text: Good morning\n"  # 5
        "    when: {hours: '25:00-12:00'}\n"  # 6
        "  - {text: Evening, when: {}}\n"  # 7
        "  - {text: 'a { b'}\n"  # 8
        "  - {text: Late, when: {hour: '05:00-06:00'}}\n"  # 9
        "  - {text: Never, when: {weekdays: []}}\n"  # 10
        "  - {text: Noon, when: {hours: '12:00-12:00'}}\n"  # 11
        "  - 42\n"  # 12
        "  - Plain, with {{braces}}\n"  # 13: fine
        "replies:\n"
        "  - {text: only on mondays, when: {weekdays: mon}}\n"  # 15
        "  - 'Happy {weekday}'\n"
    )
    with pytest.raises(PlanError) as info:
        load_pool(path)
    problems = info.value.problems
    assert [(p.line, p.field) for p in problems] == [
        (3, "openers[0]"),
        (4, "openers[1].when.weekdays"),
        (6, "openers[2].when.hours"),
        (7, "openers[3].when"),
        (8, "openers[4].text"),
        (9, "openers[5].when.hour"),
        (10, "openers[6].when"),
        (11, "openers[7].when.hours"),
        (12, "openers[8]"),
        (15, "replies"),
    ]
    rendered = [str(p) for p in problems]
    assert rendered[0] == (
        f"{path}:3:5: openers[0]: unknown variable {{frist_name}}; did you mean {{first_name}}? "
        "(known: {first_name} {weekday}; write {{ for a literal brace)"
    )
    assert "unknown weekday 'funday'" in rendered[1]
    assert "'25:00' in '25:00-12:00' is not a time of day" in rendered[2]
    assert "needs weekdays, hours or both" in rendered[3]
    assert "a lone '{'; write {{ for a literal brace" in rendered[4]
    assert "did you mean 'hours'?" in rendered[5]
    assert "never be sent" in rendered[6]
    assert "start and end at the same time" in rendered[7]
    assert "expected text, got 42" in rendered[8]
    assert "needs at least one text without `when` or {weekday}" in rendered[9]


def test_plain_texts_stay_valid(tmp_path: Path) -> None:
    """The format before conditions (a list of texts per section) loads unchanged."""
    path = tmp_path / "pool.yaml"
    path.write_text("version: 1\nlanguage: en\nopeners: [Hi!, Hello there]\nreplies: [Sure]\n")
    pool = load_pool(path)
    assert pool.openers == entries("Hi!", "Hello there") and pool.replies == entries("Sure")
    assert pool.timeless("opener") == ("Hi!", "Hello there")


# ------------------------------------------------------------------------------------- conditions

MONDAY = "Hope your Monday isn't too rough"
MORNING = "Good morning!"
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # a half-hour DST shift
    "Pacific/Auckland",
    "Pacific/Kiritimati",  # UTC+14: its Monday is mostly Sunday in UTC
    "Pacific/Pago_Pago",  # UTC-11
)


def _conditional_pool() -> MessagePool:
    return MessagePool(
        "en",
        (
            Entry("How are you?"),
            Entry(MONDAY, When(weekdays=frozenset({0}))),
            Entry(MORNING, When(hours=((5 * 60, 12 * 60),))),
            Entry("Still up?", When(hours=((22 * 60, 1440), (0, 2 * 60)))),
            Entry("Friday lunch?", When(weekdays=frozenset({4}), hours=((11 * 60, 14 * 60),))),
        ),
        entries("Sure"),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)),
    st.sampled_from(ZONES),
    st.integers(min_value=0, max_value=2**32),
)
def test_conditions_follow_the_number_s_local_time(at: datetime, zone: str, seed: int) -> None:
    """Each condition holds exactly when the local weekday and clock say so, whatever the UTC date."""
    pool = _conditional_pool()
    local = at.astimezone(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    expected = {"How are you?"}
    if local.weekday() == 0:
        expected.add(MONDAY)
    if 300 <= minute < 720:
        expected.add(MORNING)
    if minute >= 1320 or minute < 120:
        expected.add("Still up?")
    if local.weekday() == 4 and 660 <= minute < 840:
        expected.add("Friday lunch?")
    assert {entry.text for entry in pool.eligible("opener", local)} == expected
    assert pool.choose(random.Random(seed), "opener", local) in expected


@pytest.mark.parametrize(
    ("at", "zone", "monday", "morning"),
    [
        # Berlin's DST starts on Sunday 2026-03-29: 22:30 UTC that day is already Monday 00:30 there
        (datetime(2026, 3, 29, 22, 30, tzinfo=UTC), "Europe/Berlin", True, False),
        (datetime(2026, 3, 29, 21, 30, tzinfo=UTC), "Europe/Berlin", False, False),  # Sunday 23:30 CEST
        # New York's DST starts 2026-03-08: 16:30 UTC is 12:30 EDT (it would be 11:30 in EST)
        (datetime(2026, 3, 8, 16, 30, tzinfo=UTC), "America/New_York", False, False),
        (datetime(2026, 3, 8, 15, 30, tzinfo=UTC), "America/New_York", False, True),
        # ...and ends 2026-11-01: 16:30 UTC is 11:30 EST (it would be 12:30 in EDT)
        (datetime(2026, 11, 1, 16, 30, tzinfo=UTC), "America/New_York", False, True),
        # Monday 09:00 in Kiritimati (UTC+14) is Sunday 19:00 UTC
        (datetime(2026, 11, 22, 19, 0, tzinfo=UTC), "Pacific/Kiritimati", True, True),
        (datetime(2026, 11, 22, 19, 0, tzinfo=UTC), "UTC", False, False),
        # Monday 23:30 in Pago Pago (UTC-11) is Tuesday 10:30 UTC
        (datetime(2026, 11, 24, 10, 30, tzinfo=UTC), "Pacific/Pago_Pago", True, False),
        (datetime(2026, 11, 24, 10, 30, tzinfo=UTC), "UTC", False, True),
    ],
)
def test_the_local_weekday_and_hour_decide_across_dst_and_zones(
    at: datetime, zone: str, monday: bool, morning: bool
) -> None:
    pool = _conditional_pool()
    local = at.astimezone(ZoneInfo(zone))
    chosen = {pool.choose(random.Random(seed), "opener", local) for seed in range(300)}
    assert (MONDAY in chosen) is monday
    assert (MORNING in chosen) is morning


def test_a_monday_text_is_never_chosen_on_a_tuesday() -> None:
    pool = _conditional_pool()
    rng = random.Random(5)
    tuesday = datetime(2026, 11, 24, 0, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))
    for minute in range(0, 24 * 60, 7):
        assert pool.choose(rng, "opener", tuesday + timedelta(minutes=minute)) != MONDAY


def test_a_pool_needs_a_text_for_any_time() -> None:
    with pytest.raises(ValueError, match="opener texts need one without a condition"):
        MessagePool("en", (Entry(MONDAY, When(weekdays=frozenset({0}))),), entries("r"))
    with pytest.raises(ValueError, match="reply texts need one"):
        MessagePool("en", entries("a"), (Entry("Happy {weekday}"),))


# -------------------------------------------------------------------------------------- variables


def test_first_name_is_filled_or_left_out_with_its_comma() -> None:
    cases = {
        "Hey {first_name}, how are you?": ("Hey Ana, how are you?", "Hey, how are you?"),
        "Hi {first_name}!": ("Hi Ana!", "Hi!"),
        "Good morning, {first_name}.": ("Good morning, Ana.", "Good morning."),
        "{first_name}! Long time": ("Ana! Long time", "Long time"),
        "{first_name}, ¿estás por ahí?": ("Ana, ¿estás por ahí?", "¿Estás por ahí?"),
        "Oi, {first_name}! Tudo bem?": ("Oi, Ana! Tudo bem?", "Oi! Tudo bem?"),
        "How are you doing, {first_name}?": ("How are you doing, Ana?", "How are you doing?"),
    }
    for template, (named, unnamed) in cases.items():
        assert Entry(template).render("Ana") == named
        assert Entry(template).render(None) == unnamed
        assert Entry(template).render("") == unnamed


def test_weekday_is_named_in_the_pool_s_language() -> None:
    friday = datetime(2026, 11, 27, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    for language, expected in {
        "en": "Happy Friday!",
        "es": "Happy viernes!",
        "pt-BR": "Happy sexta-feira!",
        "pt": "Happy sexta-feira!",
        "xx": "Happy Friday!",  # a language without names: English
    }.items():
        pool = MessagePool(language, (Entry("Happy {weekday}!"), Entry("x")), entries("r"))
        texts = {pool.choose(random.Random(seed), "opener", friday) for seed in range(40)}
        assert texts == {expected, "x"}
    assert Entry("¡{weekday} por fin!").render(None, "viernes") == "¡Viernes por fin!"


def test_literal_braces() -> None:
    entry = Entry("Use {{first_name}} and {{ }} literally, {first_name}")
    assert entry.parts[1::2] == ("first_name",)
    assert entry.render("Ana") == "Use {first_name} and { } literally, Ana"
    assert Entry("{{weekday}}").timeless


@pytest.mark.parametrize("text", ["Hi {name}", "Hi {first_name", "Hi }", "{ first }", "{}", "a {{b} c"])
def test_unknown_variables_and_stray_braces_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"unknown variable|lone"):
        Entry(text)


def test_first_name_of_a_contact() -> None:
    assert first_name_of("Ana Souza") == "Ana"
    assert first_name_of("Rivera, Alex") == "Alex"
    assert first_name_of("  Jo  ") == "Jo"
    assert first_name_of("") is None
    assert first_name_of(" , ") is None


# -------------------------------------------------------------------------------------- no repeat

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_a_recent_text_is_not_chosen_while_another_is_possible() -> None:
    pool = MessagePool("en", entries("a", "b", "c"), entries("r"))
    recent = {"a": T0 - timedelta(days=1), "b": T0 - timedelta(days=6, hours=23)}
    assert {pool.choose(random.Random(s), "opener", T0, recent=recent) for s in range(100)} == {"c"}
    old = {**recent, "c": T0 - NO_REPEAT}  # exactly a week ago: allowed again
    assert {pool.choose(random.Random(s), "opener", T0, recent=old) for s in range(100)} == {"c"}


def test_when_every_text_is_recent_the_least_recent_one_is_chosen() -> None:
    pool = MessagePool("en", entries("a", "b", "c"), entries("r"))
    recent = {"a": T0 - timedelta(days=1), "b": T0 - timedelta(days=3), "c": T0 - timedelta(hours=2)}
    assert {pool.choose(random.Random(s), "opener", T0, recent=recent) for s in range(50)} == {"b"}


def test_no_repeat_compares_the_rendered_text() -> None:
    """ "Hi Ana!" went out yesterday: the same entry may still give Bruno "Hi Bruno!", not Ana "Hi Ana!"."""
    pool = MessagePool("en", entries("Hi {first_name}!", "Yo"), entries("r"))
    recent = {"Hi Ana!": T0 - timedelta(days=1)}
    assert {
        pool.choose(random.Random(s), "opener", T0, first_name="Ana", recent=recent) for s in range(50)
    } == {"Yo"}
    chosen = {
        pool.choose(random.Random(s), "opener", T0, first_name="Bruno", recent=recent) for s in range(50)
    }
    assert chosen == {"Hi Bruno!", "Yo"}


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=12),
    st.lists(st.tuples(st.integers(0, 11), st.integers(-3 * 24, 10 * 24)), max_size=20),
    st.integers(min_value=0, max_value=2**32),
)
def test_choose_is_pure_and_never_repeats_within_a_week_when_it_can(
    size: int, history: list[tuple[int, int]], seed: int
) -> None:
    texts = [f"text {i}" for i in range(size)]
    pool = MessagePool("en", entries(*texts), entries("r"))
    recent: dict[str, datetime] = {}
    for index, hours_ago in history:
        if index < size:
            recent[texts[index]] = T0 - timedelta(hours=hours_ago)
    chosen = pool.choose(random.Random(seed), "opener", T0, recent=recent)
    assert chosen == pool.choose(random.Random(seed), "opener", T0, recent=recent)
    assert chosen in texts
    fresh = [t for t in texts if t not in recent or abs(T0 - recent[t]) >= NO_REPEAT]
    if fresh:
        assert chosen in fresh
    else:
        assert recent[chosen] == min(recent.values())


def test_followups_fall_back_to_openers() -> None:
    pool = MessagePool("en", entries("a"), entries("r"))
    assert pool.options("followup") == entries("a")
    assert MessagePool("en", entries("a"), entries("r"), entries("f")).options("followup") == entries("f")


def test_pool_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="at least one opener"):
        MessagePool("en", (), entries("r"))


def test_shipped_contacts_are_fictional_and_unique() -> None:
    contacts = load_contacts(CONTACTS / "friendly.csv")
    assert len(contacts) >= 10
    assert len({c.phone for c in contacts}) == len(contacts)
    for contact in contacts:
        assert contact.phone.startswith("+1") and contact.phone[5:9] == "5550", contact  # 555-01XX: fiction
        assert contact.name


def test_contacts_problems_are_located(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "# people\n"
        "phone,name\n"
        "+1 202 555 0101,Alex\n"
        "\n"
        "202-555-0102,Sam\n"
        "+12025550101,Alex again\n"
        "+12025550103,Jo,extra\n"
        "+12025550104\n"
    )
    with pytest.raises(PlanError) as info:
        load_contacts(path)
    rendered = [str(p) for p in info.value.problems]
    assert rendered == [
        f"{path}:5:1: phone: '202-555-0102' is not an E.164 phone number: a + then the country code and "
        "number, 7 to 15 digits in all (e.g. +5511999990001)",
        f"{path}:6:1: phone: +12025550101 is already on line 3",
        f"{path}:7:1: expected 2 columns (phone,name), got 3",
    ]


def test_contacts_need_the_header_and_a_row(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("number,name\n+12025550101,A\n")
    with pytest.raises(PlanError, match=r":1:1: the first row must be the header phone,name"):
        load_contacts(path)
    path.write_text("phone,name\n")
    with pytest.raises(PlanError, match="no contacts"):
        load_contacts(path)


def test_contacts_normalise_phones(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('phone,name\n"+1 (202) 555-0101","Rivera, Alex"\n+12025550102,\n')
    assert load_contacts(path) == [Contact("+12025550101", "Rivera, Alex"), Contact("+12025550102", "")]


def test_contacts_file_must_be_text(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"phone,name\n+12025550101,\xff\n")
    with pytest.raises(PlanError, match=r":2:14: byte 0xff is not UTF-8"):
        load_contacts(path)


def test_texts_the_store_or_a_provider_cannot_carry_are_refused_at_their_line(tmp_path: Path) -> None:
    """Issue 14: a NUL (YAML escape) in a pool text passed validation and stopped the planning of every
    number in its batch. Every text a pool feeds to the database or a provider is checked, the
    character named with its position; line breaks and tabs stay allowed in a message."""
    path = tmp_path / "pool.yaml"
    path.write_text(
        "language: en\n"
        'description: "about \\0 this"\n'  # 2
        "openers:\n"
        '  - "ok \\u0000 nul"\n'  # 4
        '  - "half \\ud800 a pair"\n'  # 5
        '  - {text: "red \\e[31m", when: {hours: "05:00-12:00"}}\n'  # 6
        '  - "next \\N line"\n'  # 7
        "  - |\n"  # 8: a block text with a line break and a tab is fine
        "    Two lines\n"
        "    \tand a tab\n"
        '  - "windows\\r\\nline"\n'  # 11
        "  - Plain\n"
        "replies: [Sure]\n"
        "templates:\n"
        "  - name: hello\n"
        "    language: en_US\n"
        '    parameters: [fine, "two\\nlines", "a\\ttab"]\n'  # 17
    )
    with pytest.raises(PlanError) as info:
        load_pool(path)
    found = [(p.line, p.field, p.message) for p in info.value.problems]
    assert found == [
        (
            2,
            "description",
            "this text contains a NUL character (U+0000) at position 7: the database cannot store it",
        ),
        (
            4,
            "openers[0]",
            "this text contains a NUL character (U+0000) at position 4: the database cannot store it",
        ),
        (
            5,
            "openers[1]",
            "this text contains a lone surrogate (U+D800) at position 6: it is half of a UTF-16 pair, not a "
            "character, so it can be neither stored nor sent; write the character itself",
        ),
        (
            6,
            "openers[2].text",
            "this text contains an escape character (U+001B) at position 5: control characters are "
            "invisible in a chat and providers refuse or mangle them",
        ),
        (
            7,
            "openers[3]",
            "this text contains a control character (U+0085) at position 6: control characters are "
            "invisible in a chat and providers refuse or mangle them",
        ),
        (
            11,
            "openers[5]",
            "this text contains a carriage return (U+000D) at position 8: end lines with a plain line "
            "break (U+000A)",
        ),
        (
            17,
            "templates[0].parameters[1]",
            "a template parameter contains a line break (U+000A) at position 4: it must be one line",
        ),
        (
            17,
            "templates[0].parameters[2]",
            "a template parameter contains a tab (U+0009) at position 2: tabs are not allowed here",
        ),
    ]
    path.write_text("language: en\nopeners:\n  - |\n    Two lines\n    \tand a tab\nreplies: [Sure]\n")
    assert load_pool(path).openers == entries("Two lines\n\tand a tab")


def test_contact_names_are_one_line_of_storable_text(tmp_path: Path) -> None:
    """A name is sent as {first_name}: a control character the file check lets through (C1, here
    U+0085 and U+009B) is refused at its line."""
    path = tmp_path / "c.csv"
    path.write_text("phone,name\n+12025550101,Ana\n+12025550102,Bo\u0085b\n+12025550103,\u009b31mRed\n")
    with pytest.raises(PlanError) as info:
        load_contacts(path)
    assert [(p.line, p.field) for p in info.value.problems] == [(3, "name"), (4, "name")]
    assert "the name contains a control character (U+0085) at position 3" in info.value.problems[0].message
    assert "(U+009B) at position 1" in info.value.problems[1].message
