"""Where the repository's own files are, for tests in any folder of `tests/`."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PLANS = REPO_ROOT / "plans"
