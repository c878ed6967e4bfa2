"""The processes of a fleet run: each started in its own session with its output in a log file.

`spawn` starts one (a simulator, a worker, a scheduler); `Proc` watches it (its process tree, its
connections, its memory) and ends it, either cleanly (`stop`) or as a dying machine would (`kill`:
SIGKILL to the whole group, nothing gets to clean up). `warmup.testing.harness` runs a fleet of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The checkout holding ``warmup`` and ``workers``; put first on the children's PYTHONPATH so they import
this source tree whatever their working directory (an editable install can be stale)."""


class Proc:
    """One fleet process (its own session, so a SIGKILL takes its children with it)."""

    def __init__(
        self, role: str, name: str, popen: subprocess.Popen[bytes], log_path: Path, handle: IO[bytes]
    ):
        self.role = role
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self._handle = handle
        self.started = time.monotonic()
        self.killed = False
        self.last_pids: list[int] = []  # the tree as it was when killed (to find its orphaned claims)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """This process and all its descendants (a dramatiq worker's children run the actors)."""
        try:
            parent = psutil.Process(self.pid)
            return [self.pid, *(child.pid for child in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def connected_to(self, port: int) -> bool:
        """Whether a process of this tree holds an established TCP connection to ``port`` (a worker
        consuming from Redis: booted and ready, whatever its log level)."""
        for pid in self.pids():
            try:
                connections = psutil.Process(pid).net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if any(
                c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in connections
            ):
                return True
        return False

    def rss_bytes(self) -> int:
        """Resident memory of the process and its descendants now."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += psutil.Process(pid).memory_info().rss
        return total

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing gets to clean up, as when a machine dies."""
        self.killed = True
        self.last_pids = self.pids()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._handle.close()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (clean shutdown), then SIGKILL after ``timeout`` wall seconds."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._handle.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"Proc({self.name}, pid={self.pid}, alive={self.alive})"


def spawn(role: str, name: str, argv: Sequence[str], env: Mapping[str, str], directory: Path) -> Proc:
    """Start ``argv`` in ``directory`` in a session of its own, stdout and stderr appended to
    ``directory/logs/NAME.log``."""
    logs = directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{name}.log"
    handle = path.open("ab")
    popen = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=directory,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(role, name, popen, path, handle)
