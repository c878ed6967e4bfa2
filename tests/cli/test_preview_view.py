"""warmup.cli.preview_view and warmup.cli.charts.preview_chart: a preview as a table and as a PNG."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tests.services.test_preview import run
from warmup.cli.charts import preview_chart
from warmup.cli.preview_view import preview_table, summary


def test_table_has_one_row_per_day_with_the_reasons() -> None:
    preview = run("bad")
    table = preview_table(preview)
    assert table.row_count == 30
    console = Console(width=250, record=True)
    console.print(table)
    output = console.export_text()
    assert "risk.rules[2] response_rate=1 -> throttle 0.5: quota 32 -> 16" in output
    assert "risk.rules[0] overall=1 -> pause" in output
    assert "not binding" not in output  # rules that changed nothing stay out of the table
    assert summary(preview).startswith("30 days, ")


def test_chart_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    preview_chart(run("bad"), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
