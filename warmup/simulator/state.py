"""What a running simulator shares between its routes and threads: the model behind one lock, and more.

`SimState` adds to the `SimModel` what only the HTTP side needs: the clock, the faults in force and their
random stream, the webhook sender and the optional JSONL send log (buffered, flushed by `tick`, never per
request). The routes (`whapi_api`, `cloud_api`, `admin_api`) and `server.SimulatorServer` all use it.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from warmup.simulator.channels import SendRecord, phone_key
from warmup.simulator.faults import FaultPick, FaultSpec
from warmup.simulator.model import SimModel
from warmup.simulator.webhooks import WebhookSender


class Clock(Protocol):
    """Where the simulator's notion of time comes from (warmup.clock's clocks satisfy it)."""

    def now(self) -> datetime: ...


class WallClock:
    scale = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimState:
    """The model plus what the HTTP layer adds: lock, clock, faults, webhooks and the log file."""

    def __init__(
        self, model: SimModel, clock: Clock, webhook_timeout: float, log_file: str | Path | None
    ) -> None:
        self.model = model
        self.clock = clock
        self.lock = threading.Lock()
        self.fault_rng = random.Random(f"{model.seed}|faults")
        self.faults = model.config.faults
        self.channel_faults: dict[str, FaultSpec] = {
            phone_key(phone): spec for phone, spec in model.config.channel_faults.items()
        }
        self.webhooks = WebhookSender(webhook_timeout)
        self._log: IO[str] | None = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115

    def pick_fault(self, operation: str, token: str) -> tuple[FaultSpec, FaultPick]:
        with self.lock:
            phone = self.model.phone_of_token(token) if token else None
            spec = self.channel_faults.get(phone, self.faults) if phone else self.faults
            return spec, spec.pick(self.fault_rng, operation)

    def call(self, action: Callable[[datetime], Any]) -> Any:
        """Run one model action under the lock, after bringing simulated time up to date."""
        with self.lock:
            now = self.clock.now()
            posts = self.model.advance(now)
            try:
                return action(now)
            finally:
                posts += self.model.take_posts()
                if posts:
                    self.webhooks.submit(posts)

    def log_send(self, record: SendRecord | None) -> None:
        if self._log is not None and record is not None:
            self._log.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")

    def tick(self) -> int:
        with self.lock:
            posts = self.model.advance(self.clock.now())
            if self._log is not None:
                self._log.flush()
        self.webhooks.submit(posts)
        return len(posts)

    def close(self) -> None:
        with self.lock:
            if self._log is not None:
                self._log.close()
                self._log = None
