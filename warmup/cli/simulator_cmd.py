"""`warmup simulator`: run the local WhatsApp API simulator as a standalone process."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer

from warmup.core.errors import UserError


def _load_channels(path: Path) -> tuple[list[Any], dict[str, Any]]:
    """Channels from a YAML/JSON file: a list, or `{channels: [...], portfolios?: {name: tier},
    templates?: [{name, language, category?}]}`; tokens may be `${ENV_VAR}`. Returns the channel specs
    and the Cloud API settings the file gives (keyword arguments of `CloudConfig`)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from warmup.secrets import resolve_token
    from warmup.simulator import channel_spec_from_json
    from warmup.simulator.admin_api import portfolios_from_json, templates_from_json

    if not path.is_file():
        raise UserError(f"--channels {path}: no such file (a YAML list of {{token, phone, registered}})")
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise UserError(f"{path}: cannot read channels: {str(exc).splitlines()[0]}") from None
    items = data.get("channels") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UserError(f"{path}: expected a list of channels (or a 'channels:' key holding one)")
    cloud: dict[str, Any] = {}
    if isinstance(data, dict):
        unknown = set(data) - {"channels", "portfolios", "templates"}
        if unknown:
            raise UserError(f"{path}: unknown keys {sorted(unknown)} (channels, portfolios, templates)")
        try:
            if "portfolios" in data:
                cloud["portfolios"] = portfolios_from_json(data["portfolios"])
            if "templates" in data:
                cloud["templates"] = templates_from_json(data["templates"])
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
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
    return specs, cloud


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
        help="Channels file (YAML/JSON): a list of {token, phone, registered, meter?, name?, portfolio?, "
        "cloud?}, or {channels: [...], portfolios: {NAME: TIER_250}, templates: [{name, language}]}; "
        "tokens as ${VAR}.",
    ),
    cloud_webhook: str | None = typer.Option(
        None,
        "--cloud-webhook",
        help="Post Cloud API webhooks here (e.g. http://127.0.0.1:8080/webhooks/cloud), signed with "
        "the app secret in WARMUP_META_APP_SECRET.",
    ),
    log_file: Path | None = typer.Option(
        None, "--log-file", help="Append every accepted send as JSONL here."
    ),
    no_bans: bool = typer.Option(False, "--no-bans", help="Never ban a channel (benchmarks at high volume)."),
) -> None:
    """Serve the Whapi API (and its risk meter) and Meta's Cloud API locally with a seeded behaviour model;
    Ctrl-C stops it.

    Simulated time comes from WARMUP_CLOCK (the run's shared clock) or the real clock.
    """
    import os
    from dataclasses import replace

    from warmup.clock import clock_from_env
    from warmup.simulator import CloudConfig, SimConfig, SimulatorServer, Thresholds, parse_fault_args

    try:
        global_faults, channel_faults = parse_fault_args(list(fault))
    except ValueError as exc:
        raise UserError(f"--fault: {exc}") from None
    loaded, cloud = _load_channels(channels) if channels else ([], {})
    specs = tuple(loaded)
    if cloud_webhook:
        secret = os.environ.get("WARMUP_META_APP_SECRET", "").strip()
        if not secret:
            raise UserError(
                "--cloud-webhook needs the app secret that signs the posts: set WARMUP_META_APP_SECRET"
            )
        cloud.update(webhook_url=cloud_webhook, app_secret=secret)
    try:
        cloud_config = CloudConfig(**cloud)
    except ValueError as exc:
        raise UserError(f"Cloud API settings: {exc}") from None
    config = SimConfig(
        seed=seed,
        channels=specs,
        thresholds=replace(Thresholds(), bans=not no_bans),
        faults=global_faults,
        channel_faults=channel_faults,
        cloud=cloud_config,
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
    if cloud_webhook:
        print(f"  Cloud API webhooks: {cloud_webhook} (signed)   limit log: {url}/_sim/cloud/limit-log")
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
