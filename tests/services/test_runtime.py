"""The provider pool: one client per number, built from its row or from a row in hand."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.providers.whapi import WhapiProvider
from warmup.services.runtime import ProviderPool
from warmup.store import numbers


@dataclass(frozen=True)
class Row:
    provider: str = "whapi"
    token_ref: str = "POOL_TEST_TOKEN"
    base_url: str | None = "http://127.0.0.1:9"
    phone_number_id: str | None = None


def test_a_row_in_hand_builds_the_client_without_a_query(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOL_TEST_TOKEN", "tok-abc-123")
    pool = ProviderPool(engine)
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        client = pool.for_row(4242, Row())  # no such number in the store: the row in hand is enough
        assert isinstance(client, WhapiProvider) and client.base_url == "http://127.0.0.1:9"
        assert pool(4242) is client and pool.for_row(4242, Row(base_url="http://other")) is client
        assert statements == []
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
        pool.close()


def test_by_id_the_row_is_read_and_an_unknown_number_is_a_lookup_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOL_TEST_TOKEN", "tok-abc-123")
    number_id = numbers.add_number(
        engine,
        phone="+5511999990001",
        provider="whapi",
        token_ref="POOL_TEST_TOKEN",
        plan_name="p",
        plan_path="/p.yaml",
        timezone="UTC",
    )
    pool = ProviderPool(engine)
    try:
        assert isinstance(pool(number_id), WhapiProvider)
        with pytest.raises(LookupError):
            pool(number_id + 1000)
    finally:
        pool.close()
