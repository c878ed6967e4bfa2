"""The demo's final summary reads well at 80 columns and shows the time zones where there is room."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.cli.rendering import check_reads_well, render, tokens_of
from warmup.cli.demo import fleet_profiles
from warmup.cli.summary import NumberSummary, summary_table
from warmup.core.accounting import DayAccount

BAN = "sent to too many strangers who never replied"


def summaries() -> list[NumberSummary]:
    """The demo's largest fleet after 60 days, one of them banned."""
    result = []
    for i, (profile, phone) in enumerate(fleet_profiles(12)):
        summary = NumberSummary(
            phone,
            profile.plan_file.removesuffix(".yaml"),
            profile.timezone,
            replies=1000 + i,
            pauses=i,
            banned=BAN if i == 3 else None,
            state="paused" if i == 3 else "active",
        )
        summary.days = [(date(2026, 11, 23) + timedelta(days=d), 250, 240, "advance") for d in range(60)]
        summary.accounts = [
            DayAccount(i, day, 1, "advance", 250, sent=240, skipped={"windows_ended": 10})
            for day, _, _, _ in summary.days
        ]
        result.append(summary)
    return result


def words(shown: list[NumberSummary]) -> set[str]:
    texts = [
        "warm-up summary",
        "phone plan timezone local days sent deliv. replies repl. pauses busiest day state",
    ]
    texts += [f"{s.phone} fell short of its quota (96%): skipped: windows ended 600" for s in shown]
    texts += ["96%"]
    texts += [f"{shown[3].phone} was banned: {BAN} (its state in warmup: paused)", "banned"]
    for s in shown:
        texts += [s.phone, s.plan, s.timezone, s.timezone.rsplit("/", 1)[-1], s.state, s.busiest]
        texts += [str(len(s.days)), str(s.total_sent), str(s.replies), str(s.pauses)]
    return tokens_of([*texts, "stand-21d", "cauti-new", "fast-aged"])


@pytest.mark.parametrize("width", [80, 100, 120, 140])
def test_the_summary_reads_well(width: int) -> None:
    shown = summaries()
    text = render(summary_table(shown), width)
    check_reads_well(text, width, [s.phone for s in shown], words(shown))
    assert f"{shown[3].phone} was banned: {BAN}" in " ".join(text.split())
    assert "14400" in text and "240/250" in text  # sends of the whole run, the busiest day
    assert "96%" in text and "skipped: windows ended 600" in " ".join(text.split())  # delivered, and why not


def test_time_zones_go_first_and_come_back_with_room() -> None:
    narrow, medium, wide = (render(summary_table(summaries()), width) for width in (80, 100, 120))
    assert "Sao_Paulo" not in narrow and "stand-21d" in narrow and "pauses" in narrow
    assert "Sao_Paulo" in medium
    assert "America/Sao_Paulo" in wide and "standard-21d" in wide and "local days" in wide
