"""The demo's live table and per-day lines read well at 80 columns and show more where there is room."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.cli.rendering import check_reads_well, render, tokens_of
from warmup.cli.demo import fleet_profiles
from warmup.cli.live import DayLine, NumberRow, day_line_text, live_table
from warmup.cli.tables import RISK_LEGEND
from warmup.core.accounting import DayAccount
from warmup.core.domain import Reading
from warmup.core.localtime import zone

NOW = datetime(2026, 11, 24, 13, 5, tzinfo=UTC)
HEADER = "simulated Tue 24 Nov 13:05 UTC · demo day 3/7 · 1 day = 8 s · 1234 sent · Ctrl-C stops early"
PAUSE_REASON = "auto-pause: risk overall 1 (caution) below the plan's floor"
ACTIONS = ["advance", "step_back", "throttle", "hold"]


def rows() -> list[NumberRow]:
    """The demo's largest fleet (12 numbers, every phone format) with wide values in every column."""
    result = []
    for i, (profile, phone) in enumerate(fleet_profiles(12)):
        source = "simulator" if profile.meter else "local"
        result.append(
            NumberRow(
                phone=phone,
                plan=profile.plan_file.removesuffix(".yaml"),
                local_time=NOW.astimezone(zone(profile.timezone)),
                plan_day=None if i == 0 else 40 + i,
                quota=None if i == 0 else 250 + i,
                sent=120 + i,
                replies=99 + i,
                reading=Reading(2, 3, 2, 1, NOW, source),
                action=ACTIONS[i % len(ACTIONS)],
                state="paused" if i == 2 else "retired" if i == 5 else "active",
                reason=PAUSE_REASON if i == 2 else None,
            )
        )
    return result


def words(shown: list[NumberRow]) -> set[str]:
    """Every word the live view may show: the cells' full and short forms, headers, legend, notes."""
    texts = [HEADER, RISK_LEGEND, f"{shown[2].phone} paused: {PAUSE_REASON}"]
    texts += ["phone plan local time plan day quota sent replies repl. risk action state - local"]
    for row in shown:
        texts += [row.phone, row.plan, f"{row.local_time:%a %d %b %H:%M}", row.action, row.state]
        texts += [str(row.plan_day), str(row.quota), str(row.sent), str(row.replies), "2/3/2/1", "2/3/2/1*"]
    texts += ["stand-21d", "cauti-new", "fast-aged"]
    return tokens_of(texts)


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_the_live_table_reads_well(width: int) -> None:
    shown = rows()
    text = render(live_table(shown, HEADER), width)
    check_reads_well(text, width, [row.phone for row in shown], words(shown))
    assert f"{shown[2].phone} paused: {PAUSE_REASON}" in " ".join(text.split())


def test_80_columns_keep_what_matters_and_120_show_more() -> None:
    narrow, wide = render(live_table(rows(), HEADER), 80), render(live_table(rows(), HEADER), 120)
    assert "stand-21d" in narrow and "standard-21d" not in narrow
    assert "Tue 13:05" in narrow or "Tue 22:05" in narrow  # weekday and time, no date
    assert "2/3/2/1*" in narrow  # the local meter is marked, the legend says how
    assert "standard-21d" in wide and "Tue 24 Nov 10:05" in wide  # Sao Paulo, full
    assert "step_back" in wide and "2/3/2/1 local" in wide and "replies" in wide


@pytest.mark.parametrize("width", [80, 100, 140])
def test_per_day_lines_fit_the_console(width: int) -> None:
    lines = [
        DayLine(
            phone,
            profile.plan_file.removesuffix(".yaml"),
            date(2026, 11, 23),
            12,
            "step_back",
            250,
            3,
            120,
            110,
            Reading(2, 3, 2, 1, NOW, "simulator" if profile.meter else "local"),
            DayAccount(1, date(2026, 11, 23), 12, "step_back", 250, sent=120, skipped={"paused": 130}),
        )
        for profile, phone in fleet_profiles(12)
    ]
    allowed = tokens_of(text for line in lines for text in [*day_line_text(line).forms(), line.shortfall])
    for line in lines:
        text = render(day_line_text(line), width)
        check_reads_well(text, width, [line.phone], allowed)
        assert len(text.splitlines()) == 2  # the day, then why it fell short
        assert "120/250" in text or ("quota 250" in text and "sent 120" in text)
        assert "step_back" in text and "110" in text and "48%" in text and "next ?" in text
        assert "not sent 130: skipped: paused 130" in text
    wide = render(day_line_text(lines[0]), 140)
    assert "standard-21d" in wide and "Mon 2026-11-23" in wide
    assert str(day_line_text(lines[0])) == wide.splitlines()[0].strip()
