"""A local stand-in for the WhatsApp APIs: a real HTTP server with a seeded behaviour model.

Part of the product: the demo, the tests and the benchmarks all send through it. See `model` for the
behaviour (replies, readings, bans), `faults` for fault injection and `server` for the HTTP side.
"""

from __future__ import annotations

from warmup.simulator.faults import FaultKind, FaultSpec, parse_fault_args
from warmup.simulator.model import (
    Behaviour,
    ChannelSpec,
    ChannelStatus,
    MeterReading,
    SendRecord,
    SimConfig,
    SimError,
    SimModel,
    Thresholds,
)
from warmup.simulator.server import ADMIN_ENDPOINTS, SimulatorServer, channel_spec_from_json, create_app

__all__ = [
    "ADMIN_ENDPOINTS",
    "Behaviour",
    "ChannelSpec",
    "ChannelStatus",
    "FaultKind",
    "FaultSpec",
    "MeterReading",
    "SendRecord",
    "SimConfig",
    "SimError",
    "SimModel",
    "SimulatorServer",
    "Thresholds",
    "channel_spec_from_json",
    "create_app",
    "parse_fault_args",
]
