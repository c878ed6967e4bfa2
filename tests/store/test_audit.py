"""warmup.store.audit: the audit log, newest first.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from tests.store.helpers import NOW, add
from warmup.store import audit as store_audit


def test_audit_rows_newest_first(engine: Engine) -> None:
    number_id = add(engine)
    store_audit.audit(engine, "cli", "apply", None, {"file": "fleet.yaml"}, NOW)
    store_audit.audit(engine, "cli", "note", number_id, None, NOW + timedelta(seconds=1))
    assert [e.action for e in store_audit.list_audit(engine)] == ["note", "apply"]
    assert [e.action for e in store_audit.list_audit(engine, number_id)] == ["note"]
    assert store_audit.list_audit(engine, limit=1)[0].action == "note"
