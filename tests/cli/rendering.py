"""Render a rich renderable at a given width and check it reads well: no line wider than the terminal,
every phone whole, no word split or cut."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

from rich.cells import cell_len
from rich.console import Console, RenderableType

PHONE = re.compile(r"\+\d+")
RULE = re.compile(r"^[─━\s]+$")


def render(renderable: RenderableType, width: int) -> str:
    """The text a terminal ``width`` columns wide shows (styles dropped)."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def tokens_of(texts: Iterable[str]) -> set[str]:
    """Every whitespace-separated word of ``texts``: what may appear in a rendering without a split."""
    return {word for text in texts for word in text.split()}


def check_reads_well(text: str, width: int, phones: Iterable[str], words: set[str]) -> None:
    """No line exceeds ``width``; each phone appears whole (a whole word, every digit); every word shown is
    one of ``words`` (a word split over two lines or cut with an ellipsis is not)."""
    lines = text.splitlines()
    assert lines, "nothing rendered"
    too_wide = [line for line in lines if cell_len(line) > width]
    assert not too_wide, f"lines wider than {width}:\n" + "\n".join(too_wide)
    shown = [word for line in lines if not RULE.match(line) for word in line.split()]
    for phone in phones:
        assert phone in shown, f"{phone} is not shown whole at {width} columns:\n{text}"
    assert set(PHONE.findall(text)) <= set(phones), f"a phone was cut at {width} columns:\n{text}"
    strange = sorted({word for word in shown if word not in words})
    assert not strange, f"split or cut words at {width} columns: {strange}\n{text}"
