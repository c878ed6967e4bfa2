"""A local stand-in for the WhatsApp APIs: a real HTTP server with a seeded behaviour model.

Part of the product: the demo, the tests and the benchmarks all send through it. The model, pure and
seeded: `model` (the `SimModel` tying the rest together), `channels` (specs, numbers, send log, bans),
`behaviour` (what recipients do), `meter` (risk readings), `cloud` (Meta's portfolios, messaging limits,
quality and Cloud-format webhooks), `webhooks`, `faults` (fault injection). The HTTP
side: `server` (uvicorn thread, app assembly), `state`, `api_call`, and one module per API: `whapi_api`,
`cloud_api`, `admin_api`.
"""

from __future__ import annotations

from warmup.simulator.admin_api import ADMIN_ENDPOINTS, channel_spec_from_json
from warmup.simulator.behaviour import Behaviour
from warmup.simulator.channels import ChannelSpec, ChannelStatus, SendRecord, SimError, Thresholds
from warmup.simulator.cloud import CloudConfig, LimitRecord, Template
from warmup.simulator.faults import FaultKind, FaultSpec, parse_fault_args
from warmup.simulator.meter import MeterReading
from warmup.simulator.model import SimConfig, SimModel
from warmup.simulator.server import SimulatorServer, create_app

__all__ = [
    "ADMIN_ENDPOINTS",
    "Behaviour",
    "ChannelSpec",
    "ChannelStatus",
    "CloudConfig",
    "FaultKind",
    "FaultSpec",
    "LimitRecord",
    "MeterReading",
    "SendRecord",
    "SimConfig",
    "SimError",
    "SimModel",
    "SimulatorServer",
    "Template",
    "Thresholds",
    "channel_spec_from_json",
    "create_app",
    "parse_fault_args",
]
