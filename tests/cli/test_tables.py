"""Tables fitted to the terminal: columns give way in rank order, cells are never cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.cli.rendering import check_reads_well, render, tokens_of
from warmup.cli.tables import Cell, Column, FittedTable, Value, abbreviate, abbreviations

PHONES = ["+5511990000001", "+34600000002", "+346100000006", "+123456789012345"]
COLUMNS = [
    Column("phone"),
    Column("plan", shorten=2),
    Column("local time", short_header="local", shorten=1),
    Column("quota", "right"),
    Column("note", drop=3),
]


def table() -> FittedTable:
    rows: list[list[Value]] = [
        [phone, Cell("standard-21d", "stand-21d"), Cell("Tue 24 Nov 14:05", "Tue 14:05"), "12", "rest day"]
        for phone in PHONES
    ]
    return FittedTable(COLUMNS, rows, title="a fitted table")


WORDS = tokens_of(
    [*PHONES, "standard-21d stand-21d Tue 24 Nov 14:05 12 rest day a fitted table"]
    + [f"{c.header} {c.short_header or ''}" for c in COLUMNS]
)


@pytest.mark.parametrize("width", [45, 50, 60, 80, 120, 200])  # 45: the narrowest form
def test_a_fitted_table_never_cuts_a_cell(width: int) -> None:
    check_reads_well(render(table(), width), width, PHONES, WORDS)


def test_columns_give_way_in_rank_order() -> None:
    wide, medium, narrow = render(table(), 120), render(table(), 60), render(table(), 52)
    assert "standard-21d" in wide and "Tue 24 Nov 14:05" in wide and "rest day" in wide
    assert "Tue 14:05" in medium and "standard-21d" in medium  # rank 1 gave way, rank 2 not yet
    assert "stand-21d" in narrow and "rest day" not in narrow and "note" not in narrow


def test_too_narrow_for_any_form_folds_rather_than_cuts() -> None:
    text = render(table(), 44)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 44
    first_column = "".join(line.split()[0] for line in text.splitlines() if line.strip())
    assert all(phone in first_column for phone in PHONES)  # folded over two lines, every digit there


def test_rows_must_match_the_columns() -> None:
    with pytest.raises(ValueError, match="5 cells"):
        FittedTable(COLUMNS, [["+1", "x"]])


@pytest.mark.parametrize(
    ("name", "width", "short"),
    [
        ("standard-21d", 9, "stand-21d"),
        ("cautious-new", 9, "cauti-new"),
        ("fast-aged", 9, "fast-aged"),
        ("a_very_long_plan_name", 9, "a_ver_lon…"[:8] + "…"),
    ],
)
def test_abbreviate(name: str, width: int, short: str) -> None:
    assert abbreviate(name, width) == short


@given(st.text(alphabet="abcdefgh-_ ", min_size=1, max_size=40), st.integers(min_value=2, max_value=30))
def test_abbreviate_fits_and_keeps_the_start(name: str, width: int) -> None:
    short = abbreviate(name, width)
    assert len(short) <= width
    assert short == name or short[0] == name[0]


def test_abbreviations_keep_whole_names_that_would_clash() -> None:
    forms = abbreviations(["standard-21d", "standards-21d", "standard-21e", "cautious-new"], 9)
    assert forms == {
        "standard-21d": "standard-21d",  # both would read stand-21d
        "standards-21d": "standards-21d",
        "standard-21e": "stand-21e",
        "cautious-new": "cauti-new",
    }
