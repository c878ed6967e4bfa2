"""Reading hand-written YAML: hostile or broken files fail fast, with a located, readable problem."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest

from warmup.files.plans import load_plan
from warmup.files.problems import PlanError, Problem
from warmup.files.source import MAX_BYTES, MAX_DEPTH, MAX_NODES, parse_yaml, read_yaml

WALL_LIMIT = 5.0  # a sanity guard only; each case takes well under a second on a quiet machine


@contextmanager
def quickly() -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < WALL_LIMIT


def only_problem(path: Path) -> Problem:
    with quickly(), pytest.raises(PlanError) as info:
        load_plan(path)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        refs = ",".join([f"*{chr(96 + i)}"] * 9)
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [{refs}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    problem = only_problem(path)
    assert (problem.line, problem.col) == (2, 8)
    assert "aliases (*a) are not supported" in problem.message


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"name: x\n" + b"a: [" * (MAX_BYTES // 4) + b"\n")
    problem = only_problem(path)
    assert problem.line == 0
    assert f"larger than {MAX_BYTES} bytes" in problem.message


def test_non_utf8_bytes_are_located(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\ndescription: café\n".encode("latin-1"))
    problem = only_problem(path)
    assert (problem.line, problem.col) == (2, 17)
    assert "byte 0xe9 is not UTF-8" in problem.message


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "image.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    problem = only_problem(path)
    assert problem.line == 1
    assert "not UTF-8" in problem.message or "control character" in problem.message


def test_control_character_is_located(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"name: x\nfoo: a\x00b\n")
    problem = only_problem(path)
    assert (problem.line, problem.col) == (2, 7)
    assert "U+0000" in problem.message


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_flow_nesting_is_refused(tmp_path: Path, opener: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + opener * 100_000 + "\n")
    problem = only_problem(path)
    assert f"nested deeper than {MAX_DEPTH} levels" in problem.message


def test_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v: 1\n")
    problem = only_problem(path)
    assert problem.line == MAX_DEPTH + 1
    assert "nested deeper" in problem.message


def test_too_many_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text("a: [" + "1," * (MAX_NODES + 10) + "1]\n")
    problem = only_problem(path)
    assert f"more than {MAX_NODES} YAML values" in problem.message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty plan file"),
        ("   \n\n", "empty plan file"),
        ("# only a comment\n", "no content"),
        ("- a\n- b\n", "top level must be a mapping of keys (key: value), got a list"),
        ("just words\n", "got a text value"),
        ("42\n", "got a number"),
    ],
)
def test_empty_or_not_a_mapping(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(content)
    assert message in only_problem(path).message


def test_syntax_error_is_located(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("name: x\nschedule: [a, b\nramp: 1\n")
    problem = only_problem(path)
    assert (problem.line, problem.col) == (3, 5)
    assert problem.message.startswith("invalid YAML:")


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    problem = only_problem(path)
    assert "YAML tag !!python/object/apply:os.system is not supported" in problem.message


def test_second_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("name: a\n---\nname: b\n")
    problem = only_problem(path)
    assert problem.line == 2
    assert "only one YAML document" in problem.message


def test_huge_integer_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("name: x\npacing: {max_per_hour: " + "9" * 50_000 + "}\n")
    problem = only_problem(path)
    assert (problem.line, problem.field) == (2, "pacing")
    assert "not a usable number" in problem.message


def test_directory_is_not_a_plan(tmp_path: Path) -> None:
    assert "is a directory" in only_problem(tmp_path).message


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in only_problem(fifo).message


def test_scalars_follow_yaml_1_2_core_schema() -> None:
    doc = parse_yaml(
        "a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: 0x1F\ng: 2026-11-01\nh: 12:30\ni: on\nj: .inf\nk: 1_000\n",
        "x",
    )
    assert doc.data == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": None,
        "e": "1",
        "f": 31,
        "g": date(2026, 11, 1),
        "h": "12:30",
        "i": "on",
        "j": float("inf"),
        "k": 1000,
    }


def test_positions_of_keys_and_values() -> None:
    doc = parse_yaml("top:\n  list:\n    - {x: 1}\n    - y\n", "f.yaml")
    assert doc.values[("top",)] == (2, 3)
    assert doc.keys[("top", "list")] == (2, 3)
    assert doc.values[("top", "list", 0, "x")] == (3, 11)
    assert doc.values[("top", "list", 1)] == (4, 7)
    assert doc.where(("top", "list", 5, "nope")) == doc.values[("top", "list")]


def test_duplicate_keys_keep_the_first_and_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    doc = read_yaml(path)
    assert doc.data == {"a": 1, "b": {"c": 1}}
    assert [(p.line, p.col, p.field) for p in doc.problems] == [(4, 3, "b.c"), (5, 1, "a")]


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert read_yaml(path).data == {"a": 1}
