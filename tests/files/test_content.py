"""Message pools and contact lists: validation with located errors, and the pure text picker."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.paths import PLANS
from warmup.files.content import Contact, MessagePool, load_contacts, load_pool
from warmup.files.problems import PlanError

MESSAGES = PLANS / "messages"
CONTACTS = PLANS / "contacts"

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


@pytest.mark.parametrize("language", ["en", "pt", "es"])
def test_shipped_pools_are_valid_and_large_enough(language: str) -> None:
    pool = load_pool(MESSAGES / f"casual-{language}.yaml")
    assert pool.language.startswith(language)
    assert len(pool.openers) >= 25
    assert len(pool.replies) >= 25
    for text in pool.openers + pool.replies + pool.followups:
        assert not any(word in text.lower() for word in SPAMMY), text
        assert len(text) <= 80, text


def test_shipped_pools_do_not_share_texts_across_languages() -> None:
    pools = [load_pool(MESSAGES / f"casual-{lang}.yaml") for lang in ("en", "pt", "es")]
    texts = [set(p.openers) | set(p.replies) for p in pools]
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


def test_pick_never_repeats_the_avoided_text() -> None:
    pool = MessagePool("en", ("a", "b"), ("r",))
    rng = random.Random(3)
    assert all(pool.pick(rng, "opener", avoid="a") == "b" for _ in range(50))
    assert pool.pick(rng, "reply", avoid="r") == "r"  # nothing else to say: repeat rather than fail


def test_followups_fall_back_to_openers() -> None:
    pool = MessagePool("en", ("a",), ("r",))
    assert pool.options("followup") == ("a",)
    assert MessagePool("en", ("a",), ("r",), ("f",)).options("followup") == ("f",)


def test_pool_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="at least one opener"):
        MessagePool("en", (), ("r",))


@settings(max_examples=100)
@given(
    st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6, unique=True),
    st.integers(min_value=0, max_value=2**32),
    st.sampled_from(["opener", "reply", "followup"]),
    st.data(),
)
def test_pick_is_pure_and_avoids_when_it_can(
    texts: list[str], seed: int, kind: str, data: st.DataObject
) -> None:
    pool = MessagePool("en", tuple(texts), tuple(reversed(texts)))
    avoid = data.draw(st.sampled_from([*texts, None]))
    first = pool.pick(random.Random(seed), kind, avoid)  # type: ignore[arg-type]
    again = pool.pick(random.Random(seed), kind, avoid)  # type: ignore[arg-type]
    assert first == again
    assert first in texts
    if len(texts) > 1:
        assert first != avoid


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
