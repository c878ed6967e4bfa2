"""`warmup simulator`: run the local WhatsApp API simulator as a standalone process."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer

from warmup.core.errors import UserError


def _load_channels(path: Path) -> list[Any]:
    """Channels from a YAML/JSON file: a list, or `{channels: [...]}`; tokens may be `${ENV_VAR}`."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from warmup.secrets import resolve_token
    from warmup.simulator import channel_spec_from_json

    if not path.is_file():
        raise UserError(f"--channels {path}: no such file (a YAML list of {{token, phone, registered}})")
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise UserError(f"{path}: cannot read channels: {str(exc).splitlines()[0]}") from None
    items = data.get("channels") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UserError(f"{path}: expected a list of channels (or a 'channels:' key holding one)")
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UserError(f"{path}: channels[{i}] must be a mapping")
        item = dict(item)
        token = item.get("token")
        if isinstance(token, str) and token.startswith("${"):
            try:
                item["token"] = resolve_token(token).reveal()
            except UserError as exc:
                raise UserError(f"{path}: channels[{i}].token: {exc}") from None
        try:
            specs.append(channel_spec_from_json(item))
        except ValueError as exc:
            raise UserError(f"{path}: channels[{i}]: {exc}") from None
    return specs


def simulator(
    port: int = typer.Option(8099, "--port", min=0, max=65535, help="TCP port (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (keep it loopback)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the behaviour model and of fault draws."),
    fault: list[str] = typer.Option(
        [],
        "--fault",
        help="Fault probability KIND=P or PHONE:KIND=P (rate_limit, server_error, timeout, "
        "timeout_after_send, html, malformed, truncated, empty, latency; latency_ms=50-300, "
        "retry_after=2, hold_seconds=30, operations=send,health); repeatable.",
    ),
    channels: Path | None = typer.Option(
        None,
        "--channels",
        help="Channels file (YAML/JSON): a list of {token, phone, registered, meter?, name?}; "
        "tokens as ${VAR}.",
    ),
    log_file: Path | None = typer.Option(
        None, "--log-file", help="Append every accepted send as JSONL here."
    ),
    no_bans: bool = typer.Option(False, "--no-bans", help="Never ban a channel (benchmarks at high volume)."),
) -> None:
    """Serve the Whapi API (and its risk meter) locally with a seeded behaviour model; Ctrl-C stops it.

    Simulated time comes from WARMUP_CLOCK (the run's shared clock) or the real clock.
    """
    from dataclasses import replace

    from warmup.clock import clock_from_env
    from warmup.simulator import SimConfig, SimulatorServer, Thresholds, parse_fault_args

    try:
        global_faults, channel_faults = parse_fault_args(list(fault))
    except ValueError as exc:
        raise UserError(f"--fault: {exc}") from None
    specs = tuple(_load_channels(channels)) if channels else ()
    config = SimConfig(
        seed=seed,
        channels=specs,
        thresholds=replace(Thresholds(), bans=not no_bans),
        faults=global_faults,
        channel_faults=channel_faults,
    )
    clock = clock_from_env()
    try:
        server = SimulatorServer(config, clock=clock, host=host, port=port, log_file=log_file)
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot set up the simulator: {exc}") from None
    try:
        url = server.start()
    except (OSError, RuntimeError) as exc:
        raise UserError(f"cannot start the simulator on {host}:{port}: {exc}") from None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"simulator listening on {url} (seed {seed}, {len(specs)} channels, now {clock.now().isoformat()})")
    print(f"  meter: {server.meter_url}   admin: {url}/_sim/channels   send log: {url}/_sim/sends")
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        print("simulator stopped")


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add `warmup simulator` to the root app."""
    app.command("simulator")(simulator)
