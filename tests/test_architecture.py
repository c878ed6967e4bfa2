"""The import contract in pyproject.toml (`lint-imports`): it holds on the tree, and it catches a planted
violation of each wall, so a green `make lint` means the walls stand, not that nothing was checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run `lint-imports` with ``root`` first on the import path (its copy of the packages)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and the contract, to plant violations in."""
    root = tmp_path_factory.mktemp("tree")
    for package in ("warmup", "workers"):
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contract_holds_on_the_tree(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().split("contracts:")[-1].split(",")[0]


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("warmup/core/ramp.py", "import warmup.store.db", "Layers"),
        ("warmup/core/risk.py", "import httpx", "The core is pure"),
        ("warmup/providers/whapi.py", "import warmup.store.models", "Providers never import the store"),
        ("warmup/services/scheduler.py", "import workers.actors", "Layers"),
        ("warmup/services/sending.py", "import sqlalchemy", "Only the store runs SQL"),
        ("warmup/files/source.py", "import warmup.files.plans", "No import cycles"),
        ("warmup/services/admin.py", "import matplotlib", "Presentation is the command line's"),
    ],
)
def test_a_planted_violation_breaks_the_contract(
    tree: Path, module: str, planted: str, contract: str
) -> None:
    path = tree / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{planted}  # planted by the test\n")
        result = _lint(tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout
