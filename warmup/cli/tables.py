"""Tables that fit the terminal they are drawn in, for `warmup status` and the demo.

Rich shrinks a table that is too wide by cutting or folding its cells: a phone becomes `+346…` and
`fast-aged` becomes `fas t-a ged`. A `FittedTable` never lets it: each column says how it gives way,
first with shorter forms of its cells (`Tue 24 Nov 14:05` -> `Tue 14:05`, `standard-21d` -> `stand-21d`)
and then by leaving the table altogether, in an order given by ranks shared by all the columns. The
table is built again for the width it is drawn at, so a live view follows a resized terminal.

Adding a column is one more `Column` with its ranks: a narrow one (``Column("deliv.", justify="right",
drop=4.5)``) shows where there is room and leaves before the columns ranked after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from warmup.core.domain import Reading

COMPACT: dict[str, Any] = {
    "box": box.SIMPLE_HEAD,
    "show_edge": False,
    "pad_edge": False,
    "padding": (0, 1, 0, 0),
    "header_style": "bold",
}
"""No vertical rules, two spaces between columns: at 80 columns a rule and its padding cost a column."""


@dataclass(frozen=True)
class Column:
    """One column of a `FittedTable` and how it gives way when the table is too wide.

    ``shorten``: the rank at which the header becomes ``short_header`` and every `Cell` its short form;
    ``drop``: the rank at which the column leaves the table. Lower ranks give way first; None never does.
    """

    header: str
    justify: Literal["left", "right"] = "left"
    short_header: str | None = None
    shorten: float | None = None
    drop: float | None = None


@dataclass(frozen=True)
class Cell:
    """A value with a shorter form for narrow terminals (``Tue 24 Nov 14:05`` and ``Tue 14:05``)."""

    text: str
    short: str
    style: str = ""


Value = str | Text | Cell


class FittedTable:
    """A table drawn as wide as its content and never wider than the console: no cell is ever cut.

    Columns give way in rank order (see `Column`) until the table fits. Should even the narrowest form
    not fit, cells wrap rather than lose characters: a phone folded over two lines still has its digits.
    """

    def __init__(
        self, columns: Sequence[Column], rows: Iterable[Sequence[Value]], **table_options: Any
    ) -> None:
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]
        if any(len(row) != len(self.columns) for row in self.rows):
            raise ValueError(f"every row needs {len(self.columns)} cells, one per column")
        self.table_options = {**COMPACT, **table_options}

    def steps(self) -> list[tuple[float, str, int]]:
        """(rank, "shorten" or "drop", column index), in the order the columns give way."""
        steps: list[tuple[float, str, int]] = []
        for i, column in enumerate(self.columns):
            if column.shorten is not None:
                steps.append((column.shorten, "shorten", i))
            if column.drop is not None:
                steps.append((column.drop, "drop", i))
        return sorted(steps)

    def build(self, short: set[int], dropped: set[int], *, no_wrap: bool = True) -> Table:
        """The table with the columns in ``short`` shortened and those in ``dropped`` left out."""
        table = Table(**self.table_options)
        kept = [i for i in range(len(self.columns)) if i not in dropped]
        for i in kept:
            column = self.columns[i]
            header = column.short_header if i in short and column.short_header else column.header
            table.add_column(header, justify=column.justify, no_wrap=no_wrap, overflow="fold")
        for row in self.rows:
            table.add_row(*(_text(row[i], i in short) for i in kept))
        return table

    def fit(self, console: Console, options: ConsoleOptions) -> Table:
        """The widest form of the table that fits ``options.max_width``."""
        width = options.max_width
        natural = options.update_width(max(width, 10_000))
        short: set[int] = set()
        dropped: set[int] = set()
        table = self.build(short, dropped)
        for _, kind, index in self.steps():
            if Measurement.get(console, natural, table).maximum <= width:
                return table
            (short if kind == "shorten" else dropped).add(index)
            table = self.build(short, dropped)
        if Measurement.get(console, natural, table).maximum <= width:
            return table
        return self.build(short, dropped, no_wrap=False)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.fit(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.fit(console, options))


def _text(value: Value, short: bool) -> Text:
    if isinstance(value, Cell):
        return Text(value.short if short else value.text, style=value.style)
    return value if isinstance(value, Text) else Text(value)


def abbreviate(name: str, width: int) -> str:
    """``standard-21d`` -> ``stand-21d`` for ``width`` 9: the longest part of the name loses its tail.

    Parts are split at ``-``, ``_`` and spaces and keep at least three characters, so a name stays
    recognisable; one that still does not fit ends in ``…``.
    """
    if len(name) <= width:
        return name
    parts: list[str] = []
    seps: list[str] = []
    word = ""
    for ch in name:
        if ch in "-_ ":
            parts.append(word)
            seps.append(ch)
            word = ""
        else:
            word += ch
    parts.append(word)
    while sum(map(len, parts)) + len(seps) > width:
        longest = max(range(len(parts)), key=lambda i: (len(parts[i]), -i))
        if len(parts[longest]) <= 3:
            break
        parts[longest] = parts[longest][:-1]
    short = "".join(part + sep for part, sep in zip(parts, [*seps, ""], strict=True))
    return short if len(short) <= width else short[: width - 1] + "…"


def abbreviations(names: Iterable[str], width: int) -> dict[str, str]:
    """Each name's `abbreviate` form, or the whole name where two names would read the same."""
    unique = sorted(set(names))
    short = {name: abbreviate(name, width) for name in unique}
    clashes = {form for form in short.values() if list(short.values()).count(form) > 1}
    return {name: name if form in clashes else form for name, form in short.items()}


RISK_LEGEND = "risk: overall/lifetime/response/contacts, 3 good .. 1 caution; * = local meter"
"""Under every table with a `risk_cell` column; one line in 80 columns."""


def risk_cell(reading: Reading | None) -> Cell:
    """The four risk factors as ``2/3/2/1`` (`RISK_LEGEND` says which is which), marked when the meter
    is ours: `` local`` where there is room, ``*`` where there is not."""
    if reading is None:
        return Cell("-", "-")
    text = f"{reading.overall}/{reading.lifetime}/{reading.response_rate}/{reading.contacts}"
    if reading.source == "local":
        return Cell(f"{text} local", f"{text}*")
    return Cell(text, text)
