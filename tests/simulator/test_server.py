"""The running server (`warmup/simulator/server.py`): one busy connection, and the `warmup simulator` CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.simulator.model_fixture import B
from tests.simulator.server_fixture import Sim, sim, text

__all__ = ["sim"]


def test_many_sends_on_one_connection_are_all_logged(sim: Sim) -> None:
    # Throughput is measured by benchmarks/send_path.py against a plain httpx loop, not here.
    sim.admin.patch("/_sim/channels/+5511999990001", json={"registered": "2020-01-01"})
    client = sim.client()
    for i in range(300):
        assert client.post("/messages/text", json=text(to=B.phone, body=f"n{i}")).status_code == 201
    sends = sim.sends()
    assert len(sends) == 300
    assert [send["body"] for send in sends] == [f"n{i}" for i in range(300)]


def test_cli_serves_a_channels_file(tmp_path: Path) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        'channels:\n  - {token: "${SIM_TEST_TOKEN}", phone: "+5511999990001", registered: 2026-11-01}\n'
    )
    env = {**os.environ, "SIM_TEST_TOKEN": "cli-token-123", "WARMUP_CLOCK": ""}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "warmup",
            "simulator",
            "--port",
            "0",
            "--channels",
            str(channels),
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("simulator listening on http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = line.split()[3]
        health = httpx.get(url + "/health", headers={"Authorization": "Bearer cli-token-123"})
        assert health.json()["status"]["text"] == "AUTH"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "simulator stopped" in out


def test_cli_rejects_bad_faults() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "warmup", "simulator", "--fault", "rate_limit=2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "probability" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_sets_up_the_cloud_api_side(tmp_path: Path) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        "channels:\n"
        '  - {token: "t1", phone: "+5511999990001", registered: 2026-11-01, portfolio: acme}\n'
        "portfolios: {acme: TIER_50}\n"
        "templates: [{name: warmup_hello, language: pt_BR, category: utility}]\n"
    )
    secret = "cli-app-secret-never-printed"
    env = {**os.environ, "WARMUP_META_APP_SECRET": secret, "WARMUP_CLOCK": ""}
    hook = "http://127.0.0.1:9/webhooks/cloud"
    args = [sys.executable, "-m", "warmup", "simulator", "--port", "0", "--channels", str(channels)]
    proc = subprocess.Popen(
        [*args, "--cloud-webhook", hook], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("simulator listening on http://127.0.0.1:"), line
        url = line.split()[3]
        assert httpx.get(url + "/_sim/cloud/webhook").json() == {"url": hook, "app_secret_set": True}
        (acme,) = httpx.get(url + "/_sim/portfolios").json()["portfolios"]
        assert (acme["name"], acme["tier"], acme["numbers"]) == ("acme", "TIER_50", ["+5511999990001"])
        templates = httpx.get(url + "/_sim/cloud/templates").json()["templates"]
        assert templates == [{"name": "warmup_hello", "language": "pt_BR", "category": "UTILITY"}]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert secret not in out + err
    no_secret = {**env, "WARMUP_META_APP_SECRET": ""}
    refused = subprocess.run(
        [*args, "--cloud-webhook", hook], capture_output=True, text=True, timeout=30, env=no_secret
    )
    assert refused.returncode == 1 and "WARMUP_META_APP_SECRET" in refused.stderr
    channels.write_text("channels: []\nportfolios: {acme: TIER_3K}\n")
    bad_tier = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
    assert bad_tier.returncode == 1 and "TIER_3K" in bad_tier.stderr and "Traceback" not in bad_tier.stderr
