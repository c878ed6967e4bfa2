"""Read a hand-written YAML file safely, keeping where every key and value was written.

The file is checked before any parsing (size, UTF-8, control bytes) and parsed from the event stream
of ruamel.yaml into plain dicts, lists and scalars, so hostile input stays cheap: aliases are refused
(no "billion laughs"), nesting depth is capped (no recursion bombs), only core YAML tags are accepted
(no object construction), and duplicate keys are reported instead of silently overwritten.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError

from warmup.files.problems import Path_, PlanError, Problem, format_field

MAX_BYTES = 1024 * 1024
"""Plans, pools and fleet files are a few KiB; anything past 1 MiB is refused before it is parsed."""

MAX_DEPTH = 32
"""The plan language nests about six levels; deeper input is refused before it can hurt."""

MAX_NODES = 25_000
"""Parsing costs ~20 µs per YAML event in pure Python: this caps a hostile file at about a second.
A plan has a few hundred; a fleet file of 1000 numbers about 16 000."""


def node_limit(size: int, max_nodes: int = MAX_NODES, bytes_per_node: int | None = None) -> int:
    """The YAML events a text of ``size`` characters may hold: ``max_nodes``, or with ``bytes_per_node``
    one event per that many characters when that is more (a big fleet file is big because it lists
    many numbers, ~10 characters per event). Aliases are refused whatever the limit, so the cost stays
    linear in the file's size (no "billion laughs"); the size itself is capped by ``max_bytes``."""
    if bytes_per_node is None:
        return max_nodes
    return max(max_nodes, size // bytes_per_node)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")}
_COLLECTION_TAGS = {f"{_TAG}map", f"{_TAG}seq"}


@dataclass
class Document:
    """A parsed YAML file: plain data plus the 1-based (line, col) of every value and mapping key."""

    file: str
    data: Any = None
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def where(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Position of the value at `path` (or of its key), falling back to the nearest ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def problem(self, path: Path_, field_name: str, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, field_name, message)


class _Fatal(Exception):
    """Parsing cannot go on; carries the located problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def read_text(path: str | Path, *, max_bytes: int = MAX_BYTES, what: str = "file") -> str:
    """Read a small UTF-8 text file; every way it can be unusable becomes a PlanError naming the file."""
    name = str(path)

    def fail(message: str, line: int = 0, col: int = 0) -> PlanError:
        return PlanError([Problem(name, line, col, "", message)])

    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise fail(f"is a directory, not a {what}")
        if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
            raise fail(f"not a regular file, so not a {what}")
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise fail(f"no such {what}") from None
    except PermissionError:
        raise fail(f"permission denied reading this {what}") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise fail(f"larger than {max_bytes} bytes; a {what} is far smaller, is this the right file?")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", errors="replace")
        line, col = _line_col(prefix, len(prefix))
        raise fail(
            f"byte 0x{raw[exc.start]:02x} is not UTF-8 text; save the file as UTF-8 (is it binary?)",
            line,
            col,
        ) from None
    bad = _CONTROL.search(text)
    if bad:
        line, col = _line_col(text, bad.start())
        raise fail(
            f"control character U+{ord(bad.group()):04X} in the text; is this a binary file?", line, col
        )
    if not text.strip():
        raise fail(f"empty {what}")
    return text


def parse_yaml(
    text: str,
    file: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    bytes_per_node: int | None = None,
) -> Document:
    """Parse one YAML document into a Document; raises PlanError when the YAML itself is unusable.

    ``bytes_per_node`` raises the event limit with the text's size (see `node_limit`)."""
    doc = Document(file)
    try:
        _build(doc, text, max_depth, node_limit(len(text), max_nodes, bytes_per_node))
    except _Fatal as fatal:
        raise PlanError([*doc.problems, fatal.problem]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise PlanError([*doc.problems, Problem(file, line, col, "", f"invalid YAML: {message}")]) from None
    except ReaderError as exc:
        line, col = _line_col(text, exc.position)
        message = f"character U+{exc.character:04X} is not allowed in YAML"
        raise PlanError([*doc.problems, Problem(file, line, col, "", message)]) from None
    except YAMLError as exc:
        raise PlanError([*doc.problems, Problem(file, 0, 0, "", f"invalid YAML: {exc}")]) from None
    return doc


def read_yaml(
    path: str | Path,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    bytes_per_node: int | None = None,
    what: str = "file",
) -> Document:
    """`read_text` then `parse_yaml`: the safe way to open any hand-written YAML input of warmup."""
    text = read_text(path, max_bytes=max_bytes, what=what)
    return parse_yaml(
        text, str(path), max_depth=max_depth, max_nodes=max_nodes, bytes_per_node=bytes_per_node
    )


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    path: Path_
    key: tuple[str, tuple[int, int]] | None = None  # a mapping's key waiting for its value
    seen: dict[str, int] = field(default_factory=dict)  # key -> line, to report duplicates


def _build(doc: Document, text: str, max_depth: int, max_nodes: int) -> None:
    yaml = YAML(typ="safe", pure=True)
    resolver = yaml.resolver
    stack: list[_Frame] = []
    documents = 0
    root_set = False

    def place(value: Any, mark: tuple[int, int]) -> Path_ | None:
        """Attach a finished value to the open container; returns its path (None for a duplicate key)."""
        nonlocal root_set
        if not stack:
            doc.data, root_set = value, True
            doc.values[()] = mark
            return ()
        frame = stack[-1]
        if isinstance(frame.container, list):
            path = (*frame.path, len(frame.container))
            frame.container.append(value)
            doc.values[path] = mark
            return path
        assert frame.key is not None
        key, key_mark = frame.key
        frame.key = None
        path = (*frame.path, key)
        if key in frame.seen:
            doc.problems.append(
                Problem(
                    doc.file,
                    *key_mark,
                    format_field(path),
                    f"duplicate key (first written on line {frame.seen[key]})",
                )
            )
            return None
        frame.seen[key] = key_mark[0]
        frame.container[key] = value
        doc.values[path] = mark
        doc.keys[path] = key_mark
        return path

    def expecting_key() -> bool:
        return bool(stack) and isinstance(stack[-1].container, dict) and stack[-1].key is None

    for count, event in enumerate(yaml.parse(io.StringIO(text))):
        mark = (event.start_mark.line + 1, event.start_mark.column + 1)
        if count > max_nodes:
            raise _Fatal(
                Problem(doc.file, *mark, "", f"more than {max_nodes} YAML values; far too many for this file")
            )
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _Fatal(
                    Problem(doc.file, *mark, "", "only one YAML document per file (remove the second ---)")
                )
        elif isinstance(event, AliasEvent):
            raise _Fatal(
                Problem(
                    doc.file, *mark, "", f"aliases (*{event.anchor}) are not supported; write the value out"
                )
            )
        elif isinstance(event, ScalarEvent):
            if expecting_key():
                stack[-1].key = (event.value, mark)
                continue
            _check_tag(doc, event, mark, _SCALAR_TAGS)
            place(_scalar(doc, resolver, event, mark, stack), mark)
        elif isinstance(event, MappingStartEvent | SequenceStartEvent):
            if expecting_key():
                raise _Fatal(
                    Problem(doc.file, *mark, format_field(stack[-1].path), "keys must be plain text")
                )
            if len(stack) >= max_depth:
                raise _Fatal(Problem(doc.file, *mark, "", f"nested deeper than {max_depth} levels"))
            _check_tag(doc, event, mark, _COLLECTION_TAGS)
            container: dict[str, Any] | list[Any] = {} if isinstance(event, MappingStartEvent) else []
            path = place(container, mark)
            stack.append(_Frame(container, path if path is not None else (*stack[-1].path, "<duplicate>")))
        elif isinstance(event, MappingEndEvent | SequenceEndEvent):
            stack.pop()
    if not root_set:
        doc.data = None


def _check_tag(doc: Document, event: Event, mark: tuple[int, int], allowed: set[str]) -> None:
    tag = getattr(event, "tag", None)
    if tag is not None and tag != "!" and str(tag) not in allowed:
        shown = str(tag).replace(_TAG, "!!")
        raise _Fatal(Problem(doc.file, *mark, "", f"YAML tag {shown} is not supported here"))


def _scalar(
    doc: Document, resolver: Any, event: ScalarEvent, mark: tuple[int, int], stack: list[_Frame]
) -> Any:
    """Turn a scalar into None, bool, int, float, date, datetime or str, as YAML 1.2's core schema says."""
    value: str = event.value
    tag = (
        str(event.tag)
        if event.tag not in (None, "!")
        else str(resolver.resolve(ScalarNode, value, event.implicit))
    )
    if tag == f"{_TAG}null":
        return None
    if tag == f"{_TAG}bool":
        return value.lower() == "true"
    try:
        if tag == f"{_TAG}int":
            return _int(value)
        if tag == f"{_TAG}float":
            return _float(value)
    except ValueError:
        where = format_field(stack[-1].path) if stack else ""
        raise _Fatal(Problem(doc.file, *mark, where, f"{value[:40]!r} is not a usable number")) from None
    if tag == f"{_TAG}timestamp":
        try:
            return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _int(text: str) -> int:
    clean = text.replace("_", "")
    sign = -1 if clean.startswith("-") else 1
    digits = clean.lstrip("+-").lower()
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits)


def _float(text: str) -> float:
    clean = text.replace("_", "").lower()
    if clean.lstrip("+-") == ".inf":
        return -math.inf if clean.startswith("-") else math.inf
    if clean == ".nan":
        return math.nan
    return float(clean)
