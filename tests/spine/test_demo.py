"""``consentgate demo`` runs by itself on loopback and shows records of every transport."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from gateway.demo import show as demo


def test_demo_runs_and_ends_by_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--seconds", "6"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "permit_join 6 s -> ok" in out
    assert "consent/set health on -> ok" in out
    assert "switch0_power" in out  # a Shelly over mDNS
    assert "temperature" in out  # BLE sensors and simulated devices
    assert '"health":' in out.splitlines()[-1]  # health flowed once granted


async def test_demo_runs_on_the_embedded_broker_without_mosquitto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "mosquitto_available", lambda: False)  # a machine with only Python
    out = io.StringIO()
    table = await demo.run_demo(6.0, devices=3, rate=2.0, out=out)
    assert "permit_join 6 s -> ok" in out.getvalue()
    assert "consent/set health on -> ok" in out.getvalue()
    assert '"health":' in table.summary()
