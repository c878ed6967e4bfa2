"""Run a benchmark in two checkouts, alternately, in ONE run: did a change move its ratios?

A refactor (a new layout, a split module) should leave the send path and planning where they were. The
machine's speed drifts by ~20 % from run to run, so the two trees are measured in alternation (A B A B
...) and each benchmark's OWN ratio to its same-run baseline is compared, not raw rates.

    .venv/bin/python benchmarks/compare.py --base ../base send_path planning --rounds 3 [--quick]
        [--sizes 1000 10000]

``--base`` is another checkout of this repository (``git worktree add ../base <commit>``): its
benchmark runs with that checkout first on ``PYTHONPATH``, so it and the fleet processes it starts
(`warmup.testing.processes.SOURCE_ROOT`) import the base tree's ``warmup`` and ``workers``. Both use
this interpreter and its installed dependencies. Prints one JSON object: every round's ratios per tree,
their medians, and the median of the new tree's ratios over the base's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import emit, parser

HERE = Path(__file__).resolve().parents[1]

RATIOS: dict[str, Callable[[dict[str, Any]], dict[str, float]]] = {
    "send_path": lambda r: {
        "ratio_one_worker": r["ratio_one_worker"],
        "ratio_two_workers": r["ratio_two_workers"],
    },
    "planning": lambda r: {
        f"ratio_at_{size['numbers']}": size["ratio_to_bulk_insert"] for size in r["sizes"]
    },
}
"""Per benchmark: the ratios to its same-run baseline that a refactor must leave unchanged."""


def run(tree: Path, name: str, quick: bool, extra: Sequence[str] = ()) -> dict[str, float]:
    """One run of benchmark ``name`` from checkout ``tree`` (``extra``: more arguments); its ratios."""
    argv = [sys.executable, str(tree / "benchmarks" / f"{name}.py"), *(["--quick"] if quick else []), *extra]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} in {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return RATIOS[name](json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--base", type=Path, required=True, help="the other checkout (the 'before' tree)")
    p.add_argument("--rounds", type=int, default=3, help="alternating runs per tree and benchmark")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="fleet sizes for planning.py")
    p.add_argument("benchmarks", nargs="+", choices=sorted(RATIOS))
    args = p.parse_args()
    base = args.base.resolve()
    trees = {"base": base, "new": HERE}
    result: dict[str, Any] = {"base": str(base), "new": str(HERE), "rounds": args.rounds, "quick": args.quick}
    lines: list[str] = []
    for name in args.benchmarks:
        runs: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
        for round_no in range(args.rounds):
            order = ("base", "new") if round_no % 2 == 0 else ("new", "base")
            for which in order:
                extra = ["--sizes", *map(str, args.sizes)] if name == "planning" and args.sizes else []
                runs[which].append(run(trees[which], name, args.quick, extra))
                print(f"{name} round {round_no + 1} {which}: {runs[which][-1]}", file=sys.stderr)
        medians = {
            which: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for which, rs in runs.items()
        }
        change = {key: round(medians["new"][key] / medians["base"][key], 3) for key in medians["base"]}
        result[name] = {"runs": runs, "medians": medians, "new_over_base": change}
        lines.append(f"{name}: medians base {medians['base']}, new {medians['new']}; new/base {change}")
    emit("compare", result, lines)


if __name__ == "__main__":
    main()
