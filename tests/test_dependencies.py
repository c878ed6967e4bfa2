"""Every dependency the project declares is used: a runtime one is imported by warmup/ or workers/, a
development one by the tests or named by a tool; nothing is declared for nothing (issue 13, item 7)."""

from __future__ import annotations

import ast
import re
import tomllib

from tests.paths import REPO_ROOT

IMPORT_NAMES = {
    "pydantic-settings": "pydantic_settings",
    "ruamel.yaml": "ruamel",
    "psycopg": "psycopg",
    "prometheus-client": "prometheus_client",
}
USED_WITHOUT_IMPORT = {
    "httptools": "uvicorn's C HTTP parser, picked by uvicorn when installed",
}
DEV_TOOLS = {"pytest", "pytest-timeout", "import-linter", "mypy", "ruff"}


def declared(group: str | None) -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0] for spec in specs]


def imported(*folders: str) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found


def module_of(distribution: str) -> str:
    return IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))


def test_every_runtime_dependency_is_imported_by_the_product() -> None:
    product = imported("warmup", "workers")
    unused = [
        name for name in declared(None) if name not in USED_WITHOUT_IMPORT and module_of(name) not in product
    ]
    assert unused == [], f"declared in [project.dependencies] but never imported: {unused}"


def test_every_dev_dependency_is_used_by_the_tests_or_is_a_tool() -> None:
    tests = imported("tests", "benchmarks")
    checked = imported("warmup", "workers")  # what mypy checks (`[tool.mypy] files`)
    unused = [
        name
        for name in declared("dev")
        if name not in DEV_TOOLS
        and not (name.startswith("types-") and module_of(name.removeprefix("types-")) in checked)
        and module_of(name) not in tests
    ]
    assert unused == [], f"declared in the dev extras but never used: {unused}"


def test_what_was_dropped_stays_dropped() -> None:
    """pendulum (the standard zoneinfo does the local days), tenacity (retries are the broker's and the
    send path's own) and jsonschema (only tests validate against schemas) are not runtime dependencies."""
    runtime = declared(None)
    assert not {"pendulum", "tenacity", "jsonschema"} & set(runtime)
    assert "jsonschema" in declared("dev")
