"""Shared fixtures. Service-backed fixtures skip locally when a server is missing but fail in CI."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(name: str, reason: str) -> None:
    """Skip (locally) or fail (CI=true) when a real service the test needs is missing."""
    message = f"{name} is not reachable: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: service-backed tests must run, not skip)", pytrace=False)
    pytest.skip(message)
