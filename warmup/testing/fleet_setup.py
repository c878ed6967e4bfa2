"""What a test fleet is made of: its plan directory (plan, pool, contacts) and its numbers' configurations.

The subprocess fleet (`warmup.testing.harness`) and the in-process fleet of the tests
(``tests/fleet_fixture.py``) write the same kind of plan and enroll the same kind of numbers; they differ
only in the values, which each passes here. The phones and tokens of the subprocess fleet are derived
from a number's index (`phone_of`, `token_of`), so 10,000 numbers need no list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from warmup.store.numbers import NumberConfig

PLAN_TEMPLATE = """\
version: 1
name: {name}
schedule:
  windows:
    - {{days: daily, hours: "{hours}"}}
ramp:
  steps:
    - {{days: 1-{ramp_days}, volume: {volume}}}
pacing:
  gap: {gap}
  typing: {typing}
  max_per_hour: {max_per_hour}
  max_new_contacts_per_day: {max_new_contacts}
audience:
  peers: {{reply_probability: {reply_probability}, reply_delay: {reply_delay}}}
  contacts: contacts.csv
content: pool.yaml
"""

OPENERS = (
    "Hi there!",
    "Hello, how are you?",
    "Hey! Long time",
    "Good day to you",
    "How was your week?",
    "Morning! All well?",
    "Hey, quick hello",
    "Hope you are doing fine",
)
REPLIES = ("All good, thanks!", "Fine, and you?", "Great to hear from you", "Doing well, thanks")


@dataclass(frozen=True)
class PlanValues:
    """The values `PLAN_TEMPLATE` takes: one daily window, one ramp step, the pacing, the peers."""

    name: str
    volume: int | str  # a number or LOW..HIGH
    ramp_days: int  # the one step covers plan days 1 to ramp_days
    hours: str
    gap: str
    typing: str
    max_per_hour: int
    max_new_contacts: int
    reply_probability: float
    reply_delay: str


def pool_yaml(openers: Sequence[str] = OPENERS, replies: Sequence[str] = REPLIES) -> str:
    """A message pool (English) with these texts."""
    lists = f"openers: {json.dumps(list(openers))}\nreplies: {json.dumps(list(replies))}\n"
    return "version: 1\nlanguage: en\n" + lists


def write_plan_files(
    directory: Path, plan: PlanValues, contacts: Iterable[tuple[str, str]], pool: str | None = None
) -> Path:
    """Write ``plan.yaml``, its ``pool.yaml`` (default: every text of `OPENERS` and `REPLIES`) and its
    ``contacts.csv`` (phone, name) into ``directory``; returns the plan's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pool.yaml").write_text(pool if pool is not None else pool_yaml())
    (directory / "contacts.csv").write_text("phone,name\n" + "".join(f"{p},{n}\n" for p, n in contacts))
    path = directory / "plan.yaml"
    path.write_text(PLAN_TEMPLATE.format(**asdict(plan)))
    return path


def phone_of(index: int) -> str:
    """The E.164 phone of fleet number ``index`` (distinct from every contact phone)."""
    return f"+55119{index:08d}"


def contact_of(index: int) -> str:
    return f"+55118{index:08d}"


def token_of(index: int) -> str:
    return f"sim-token-{index:06d}-abcdef"


def token_ref_of(index: int) -> str:
    """The environment variable holding the token of fleet number ``index`` (the store keeps only this)."""
    return f"SIM_TOKEN_{index}"


def simulator_numbers(
    phones: Sequence[str],
    *,
    base_url: str,
    plan_name: str,
    plan_path: Path,
    timezones: Sequence[str],
    registered: date,
) -> list[NumberConfig]:
    """The configurations of ``phones`` on the simulator at ``base_url``: number ``i`` reads its token
    from `token_ref_of` ``(i)`` and lives in ``timezones[i % len(timezones)]``."""
    return [
        NumberConfig(
            phone=phone,
            provider="simulator",
            token_ref=token_ref_of(i),
            plan_name=plan_name,
            plan_path=str(plan_path),
            timezone=timezones[i % len(timezones)],
            registered=registered,
            base_url=base_url,
        )
        for i, phone in enumerate(phones)
    ]
