"""Issue 14 item 7: the files a plan names stay inside the plan's folder unless WARMUP_PLAN_ROOT allows more.

Before: `content`/`audience.contacts` took absolute paths, `../` and symlinks out of the folder, and the
validation errors quoted lines of whatever file they read. Each test puts a broken file OUTSIDE whose
line would be quoted if it were read, and checks it is refused at the plan's field without being read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.files.test_loader import GOOD, problems_of, write
from warmup.files.plans import ENV_PLAN_ROOT, load_plan

REPO_PLANS = Path(__file__).resolve().parents[2] / "plans"
OUTSIDE_LINE = "root:SECRET-LINE-FROM-OUTSIDE"
POOL = "language: en\nopeners: [hi]\nreplies: [hello]\n"
CONTACTS = "phone,name\n+12025550101,Alex\n"
FIELDS = {
    "content": ("content", "pool.yaml", POOL, "message pool"),
    "contacts": ("audience.contacts", "people.csv", CONTACTS, "contacts file"),
}


def plan_text(field: str, ref: str) -> str:
    if field == "content":
        return GOOD + f"content: {ref!r}\n"
    return GOOD.replace("  peers: {reply_probability: 0.7}\n", f"  peers: {{}}\n  contacts: {ref!r}\n")


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv(ENV_PLAN_ROOT, raising=False)
    plans, outside = tmp_path / "plans", tmp_path / "outside"
    plans.mkdir()
    outside.mkdir()
    for _, name, _, _ in FIELDS.values():  # broken files: reading them would quote OUTSIDE_LINE
        (outside / name).write_text(f"{OUTSIDE_LINE}\n{OUTSIDE_LINE}: [\n")
    return plans, outside


def refs(plans: Path, outside: Path, name: str) -> dict[str, str]:
    (plans / "link").symlink_to(outside / name)
    (plans / "dirlink").symlink_to(outside, target_is_directory=True)
    return {
        "absolute": str(outside / name),
        "dotdot": f"../outside/{name}",
        "inner dotdot": f"sub/../../outside/{name}",
        "symlink": "link",
        "symlinked dir": f"dirlink/{name}",
    }


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "inner dotdot", "symlink", "symlinked dir"])
def test_a_file_outside_the_plans_folder_is_refused_at_the_field_unread(
    dirs: tuple[Path, Path], field: str, kind: str
) -> None:
    plans, outside = dirs
    dotted, name, _, what = FIELDS[field]
    ref = refs(plans, outside, name)[kind]
    path = write(plans, plan_text(field, ref))
    (problem,) = problems_of(path)
    rendered = str(problem)
    assert problem.field == dotted and problem.line > 0, rendered
    assert rendered.startswith(f"{path}:{problem.line}:")
    assert f"{what} {ref!r} is outside the plan's folder" in problem.message
    assert "WARMUP_PLAN_ROOT" in problem.message
    assert "SECRET-LINE" not in rendered and str(outside / name) + ":" not in rendered


@pytest.mark.parametrize("field", FIELDS)
def test_warmup_plan_root_allows_a_folder_explicitly(
    dirs: tuple[Path, Path], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans, outside = dirs
    _, name, good, _ = FIELDS[field]
    (outside / name).write_text(good)
    path = write(plans, plan_text(field, f"../outside/{name}"))
    with pytest.raises(Exception, match="outside"):
        load_plan(path)
    monkeypatch.setenv(ENV_PLAN_ROOT, str(outside))
    plan = load_plan(path)
    loaded = plan.content if field == "content" else plan.audience.contacts
    assert loaded == str((outside / name).resolve())
    # the root allows that folder, not everything: a sibling of it is still refused
    (outside.parent / "elsewhere").mkdir()
    (outside.parent / "elsewhere" / name).write_text(good)
    (problem,) = problems_of(write(plans, plan_text(field, f"../elsewhere/{name}")))
    assert "outside" in problem.message and str(outside) in problem.message


def test_inside_the_folder_still_loads_through_subfolders_and_inner_symlinks(dirs: tuple[Path, Path]) -> None:
    plans, _ = dirs
    (plans / "messages").mkdir()
    (plans / "messages" / "pool.yaml").write_text(POOL)
    (plans / "current.yaml").symlink_to(plans / "messages" / "pool.yaml")
    plan = load_plan(write(plans, plan_text("content", "./messages/../current.yaml")))
    assert plan.content == str((plans / "messages" / "pool.yaml").resolve())


def test_a_symlinked_plans_folder_is_its_own_folder(dirs: tuple[Path, Path]) -> None:
    plans, outside = dirs
    (plans / "pool.yaml").write_text(POOL)
    write(plans, plan_text("content", "pool.yaml"))
    (outside / "plans-link").symlink_to(plans, target_is_directory=True)
    plan = load_plan(outside / "plans-link" / "plan.yaml")
    assert plan.content == str((plans / "pool.yaml").resolve())


@pytest.mark.parametrize("name", sorted(p.name for p in REPO_PLANS.glob("*.yaml")))
def test_the_example_plans_still_load(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PLAN_ROOT, raising=False)
    plan = load_plan(REPO_PLANS / name)
    for ref in (plan.content, plan.audience.contacts):
        assert ref is None or Path(ref).is_relative_to(REPO_PLANS)
