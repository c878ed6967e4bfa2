"""The simulator's HTTP face: the starlette app over the `SimModel`, served by uvicorn in a thread.

`SimulatorServer(config).start()` serves it on a free loopback port and returns the base URL; `.stop()`
(or leaving the `with` block) shuts it down. A second thread moves simulated time forward every
`tick_seconds` so replies and statuses due by now reach webhooks; request handlers advance it too, so
`GET /messages/list` never lags. All state lives in memory behind one lock (`state.SimState`).

The routes live by API: `whapi_api` (Whapi and its risk meter), `cloud_api` (Meta's Cloud API for the
same channels) and `admin_api` (the `/_sim/` endpoints, see `ADMIN_ENDPOINTS`).
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from warmup.simulator.admin_api import admin_routes
from warmup.simulator.cloud_api import cloud_routes
from warmup.simulator.model import SimConfig, SimModel
from warmup.simulator.state import Clock, SimState, WallClock
from warmup.simulator.whapi_api import METER_PATH, whapi_routes

log = logging.getLogger(__name__)


def create_app(state: SimState) -> Starlette:
    """The ASGI app over one state (exposed so tests or other servers can mount it)."""
    # Meta Cloud API last: its path patterns would also match the paths above
    return Starlette(routes=[*whapi_routes(state), *admin_routes(state), *cloud_routes(state)])


class SimulatorServer:
    """A running simulator: `start()` -> base URL, `stop()`; also a context manager.

    `model_or_config` is a `SimModel`, a `SimConfig` or None (empty config, seed 0). `clock` defaults to
    the wall clock; pass the run's clock (e.g. `warmup.clock.clock_from_env()`) or a `ManualClock` in tests.
    `port=0` picks a free port.
    """

    def __init__(
        self,
        model_or_config: SimModel | SimConfig | None = None,
        *,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: str | Path | None = None,
        webhook_timeout: float = 2.0,
        tick_seconds: float = 0.05,
    ) -> None:
        model = model_or_config if isinstance(model_or_config, SimModel) else SimModel(model_or_config)
        self._state = SimState(model, clock or WallClock(), webhook_timeout, log_file)
        self.app = create_app(self._state)
        self.host = host
        self.port = port
        self.tick_seconds = tick_seconds
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None

    @property
    def model(self) -> SimModel:
        return self._state.model

    @property
    def lock(self) -> threading.Lock:
        """Hold it to read or change the model directly while the server runs."""
        return self._state.lock

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def meter_url(self) -> str:
        return self.base_url + METER_PATH

    def start(self) -> str:
        if self._thread is not None:
            return self.base_url
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then (else Nagle + delayed ACK: 40 ms/request)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="warmup-simulator", daemon=True
        )
        self._state.webhooks.start()
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="warmup-sim-ticker", daemon=True)
        self._ticker.start()
        deadline = 10.0
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > deadline:
                self.stop()
                raise RuntimeError(f"simulator failed to start on {self.host}:{self.port}")
            self._stopping.wait(0.01)
            waited += 0.01
        return self.base_url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        self._state.webhooks.stop()
        if self._socket is not None:
            self._socket.close()  # asyncio closed it already; this only drops our handle
        self._state.close()

    def _tick_loop(self) -> None:
        while not self._stopping.wait(self.tick_seconds):
            try:
                self._state.tick()
            except Exception:  # a bad webhook URL or a clock hiccup must not stop time
                log.exception("simulator tick failed")

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
