"""Fuzz target ``rpc``: device RPC answers through ``parse_info`` and ``parse_status``
(allowed: ``DeviceError``)."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

from bench.fuzz.findings import Findings
from bench.fuzz.values import mutate_tree, random_json
from bench.fuzz_envelope import mutate
from drivers.shelly import DRIVER as SHELLY
from gateway.errors import DeviceError


def genuine_rpc(rng: random.Random) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Return a device id, a ``Shelly.GetDeviceInfo`` and a ``Shelly.GetStatus`` answer."""
    mac = rng.randbytes(6).hex().upper()
    device = f"shellyplus1pm-{mac.lower()}"
    info = {
        "name": rng.choice((None, "Kitchen")),
        "id": device,
        "mac": mac,
        "slot": 0,
        "model": "SNSW-001P16EU",
        "gen": 2,
        "fw_id": "20240101-000000/1.4.2-g",
        "ver": "1.4.2",
        "app": "Plus1PM",
        "auth_en": False,
        "auth_domain": None,
    }
    switch = {
        "id": 0,
        "source": "init",
        "output": True,
        "apower": 12.5,
        "voltage": 230.1,
        "freq": 50.0,
        "current": 0.054,
        "aenergy": {"total": 1234.5, "by_minute": [0.0], "minute_ts": 1700000000},
        "temperature": {"tC": 41.2, "tF": 106.2},
    }
    status: dict[str, Any] = {
        "ble": {},
        "input:0": {"id": 0, "state": False},
        "switch:0": switch,
        "pm1:0": {
            "id": 0,
            "apower": 3.0,
            "voltage": 229.0,
            "current": 0.01,
            "aenergy": {"total": 3.5},
        },
        "temperature:0": {"id": 0, "tC": 21.5},
        "humidity:0": {"id": 0, "rh": 45.0},
        "devicepower:0": {"id": 0, "battery": {"V": 2.9, "percent": 80}},
        "sys": {
            "mac": mac,
            "restart_required": False,
            "uptime": 1234,
            "available_updates": {"stable": {"version": "1.5.0"}, "beta": {"version": "1.6.0-b1"}},
        },
        "wifi": {"sta_ip": "192.0.2.10", "status": "got ip", "ssid": "HomeNet", "rssi": -58},
    }
    return device, info, status


def rpc_bodies(rng: random.Random) -> Iterator[tuple[str, Any, str]]:
    """Yield (expected id, body, how it was made) without end."""
    while True:
        device, info, status = genuine_rpc(rng)
        base = rng.choice((info, status))
        choice = rng.random()
        if choice < 0.5:
            yield device, mutate_tree(rng, base), "tree"
        elif choice < 0.8:
            text = mutate(rng, json.dumps(base).encode(), [b'"apower": 1e999', b"[[[[", b"NaN"])
            try:
                body = json.loads(text)
            except (UnicodeDecodeError, ValueError, RecursionError):
                yield device, None, "bad_json"  # mdns_http.get_json refuses it: typed
                continue
            yield device, body, "text"
        elif choice < 0.9:
            yield device, random_json(rng), "random"
        else:
            yield device, base, "genuine"


def fuzz_rpc(inputs: int, seed: int) -> Findings:
    """Feed ``inputs`` decoded answers to ``parse_info`` and ``parse_status``."""
    rng = random.Random(seed)
    findings = Findings("rpc")
    bodies = rpc_bodies(rng)
    for _ in range(inputs):
        device, body, made = next(bodies)
        if made == "bad_json":
            findings.outcomes["rpc:bad_json (transport)"] += 1
            continue
        expected = rng.choice((None, device, "shellyplus1pm-000000000000"))
        calls: tuple[tuple[str, Callable[[Any], object]], ...] = (
            ("info", functools.partial(SHELLY.parse_info, expected_id=expected)),
            ("status", SHELLY.parse_status),
        )
        for name, call in calls:
            try:
                call(body)
            except DeviceError as exc:
                findings.outcomes[f"{name}:{exc.reason}"] += 1
            except Exception as exc:  # noqa: BLE001 - a fuzz finding
                findings.crash(exc, (name, body))
            else:
                findings.outcomes[f"{name}:ok"] += 1
    findings.inputs = inputs
    return findings
