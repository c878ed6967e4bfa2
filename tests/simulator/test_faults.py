"""Fault specs: validation, seeded draws, operation filters and the CLI syntax."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.simulator.faults import FaultKind, FaultSpec, parse_fault_args


def test_a_healthy_spec_never_faults_and_uses_no_randomness() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert FaultSpec().pick(rng, "send").kind is None
    assert rng.getstate() == state


def test_draws_are_seeded_and_follow_the_probabilities() -> None:
    spec = FaultSpec(rate_limit=0.2, timeout=0.1, latency=0.5, latency_ms=(10, 20))
    picks = [spec.pick(random.Random(7), "send") for _ in range(3)]
    assert picks[0] == picks[1] == picks[2]
    rng = random.Random(3)
    draws = [spec.pick(rng, "send") for _ in range(2000)]
    share = {kind: sum(d.kind is kind for d in draws) / len(draws) for kind in FaultKind}
    assert 0.16 < share[FaultKind.RATE_LIMIT] < 0.24
    assert 0.07 < share[FaultKind.TIMEOUT] < 0.13
    assert share[FaultKind.HTML] == 0
    delayed = [d.latency for d in draws if d.latency]
    assert 0.4 < len(delayed) / len(draws) < 0.6
    assert all(0.010 <= s <= 0.020 for s in delayed)


def test_operations_limit_where_faults_apply() -> None:
    spec = FaultSpec(server_error=1.0, operations=frozenset({"send"}))
    rng = random.Random(0)
    assert spec.pick(rng, "send").kind is FaultKind.SERVER_ERROR
    assert spec.pick(rng, "health").kind is None


@pytest.mark.parametrize(
    "settings_",
    [
        {"rate_limit": 1.5},
        {"timeout": -0.1},
        {"rate_limit": 0.6, "html": 0.6},
        {"operations": ["nope"]},
        {"latency_ms": "300-100"},
        {"bogus": 1},
        {"rate_limit": True},
    ],
)
def test_bad_specs_are_refused(settings_: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultSpec.from_mapping(settings_)


def test_cli_syntax_global_and_per_channel() -> None:
    global_spec, channels = parse_fault_args(
        [
            "429=0.1",
            "5xx=0.05",
            "latency=0.5",
            "latency_ms=50-300",
            "+5511999990001:timeout=0.2",
            "+5511999990001:hold_seconds=3",
            "operations=send,meter",
        ]
    )
    assert (global_spec.rate_limit, global_spec.server_error, global_spec.latency) == (0.1, 0.05, 0.5)
    assert global_spec.latency_ms == (50, 300)
    assert global_spec.operations == frozenset({"send", "meter"})
    assert channels["+5511999990001"] == FaultSpec(timeout=0.2, hold_seconds=3.0)
    with pytest.raises(ValueError):
        parse_fault_args(["rate_limit"])


@settings(max_examples=100)
@given(st.lists(st.floats(0, 0.125), min_size=8, max_size=8), st.integers(0, 2**32))
def test_any_valid_spec_round_trips_and_draws_at_most_one_failure(probs: list[float], seed: int) -> None:
    spec = FaultSpec(**{kind.value: p for kind, p in zip(FaultKind, probs, strict=True)})
    assert FaultSpec.from_mapping(spec.to_json()) == spec
    pick = spec.pick(random.Random(seed), "send")
    assert pick.kind is None or getattr(spec, pick.kind.value) > 0
