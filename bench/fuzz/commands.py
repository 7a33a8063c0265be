"""Fuzz target ``commands``: ``Router.dispatch`` of a real hub for every registered command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from bench.common import bench_config, default_broker, known_devices, running_hub
from bench.fuzz.findings import Findings, Hang
from bench.fuzz.params import command_params
from bench.fuzz.values import random_json, random_text
from bench.fuzz_envelope import mutate
from gateway.commands.router import ERROR_CODES, MAX_REQUEST_BYTES
from gateway.consent.catalogue import FLAGS
from gateway.devices.model import Candidate, DeviceInfo, Sighting

SESSION: Final = 5_000
ANSWER_TIMEOUT_S: Final = 5.0
KNOWN_HANGS: Final = 2


class _Pairer:
    """Answers pairing in place of a Wi-Fi device, so pair/unpair/rename run their full path."""

    async def read_info(self, candidate: Candidate) -> DeviceInfo:
        """Return made-up device info for ``candidate``."""
        return DeviceInfo(
            model="SNSW-001P16EU",
            firmware="1.4.2",
            mac="A8:03:2A:B1:23:45",
            name=f"Plug {candidate.stable_id[-4:]}",
        )


class _LastError(logging.Handler):
    """Keeps the exception of the router's last ``command failed`` record."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exc: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Remember the record's exception."""
        if record.exc_info and record.exc_info[1] is not None:
            self.exc = record.exc_info[1]


def _value(rng: random.Random, name: str, pools: Mapping[str, list[Any]]) -> Any:
    if rng.random() < 0.35 or name not in pools:
        return random_json(rng)
    return rng.choice(pools[name])


def command_request(
    rng: random.Random,
    takes: Mapping[str, tuple[str, ...]],
    pools: Mapping[str, list[Any]],
) -> tuple[str, bytes, str | None]:
    """Return (command, payload, the error expected if the request is bad by construction);
    ``takes``: the parameter names of every command (bench.fuzz.params)."""
    commands = tuple(takes)
    every = sorted({name for names in takes.values() for name in names})
    command = rng.choice(commands)
    kind = rng.random()
    if kind < 0.04:
        return (
            rng.choice(("", "nope", "consent", "consent/set/x", random_text(rng))),
            b"{}",
            "unknown_command",
        )
    if kind < 0.10:
        junk = mutate(rng, b'{"flag": "health", "state": "off"}', [b"{", b"}", b'"'])
        if not junk.strip():
            return command, junk, None  # an empty body is an empty request object
        try:
            json.loads(junk)
        except (UnicodeDecodeError, ValueError):
            return command, junk, "invalid_json"
        return command, junk, None
    if kind < 0.13:
        return (
            command,
            json.dumps(rng.choice(([1, 2], "text", 3, None, True))).encode(),
            "invalid_request",
        )
    if kind < 0.14:
        return command, b'{"a": "' + b"x" * MAX_REQUEST_BYTES + b'"}', "invalid_request"
    own = takes[command]
    names = list(own) if rng.random() < 0.6 else rng.sample(own, rng.randint(0, len(own)))
    if rng.random() < 0.1:
        names.append(rng.choice(every))
    params = {name: _value(rng, name, pools) for name in names}
    expected = None
    if rng.random() < 0.7:
        params["transaction"] = rng.choice((rng.randint(0, 10**6), f"t-{rng.randrange(10**6)}"))
    if rng.random() < 0.06:
        params["transaction"] = rng.choice(([1], {"a": 1}, 1.5))
        expected = "invalid_request"
    if rng.random() < 0.06:
        params[rng.choice(("zz_unknown", "Flag", "devices", ""))] = 1
        expected = expected or "any"
    payload = json.dumps(params).encode()
    try:
        json.dumps(params, allow_nan=False)
    except ValueError:  # a random value holds NaN or Infinity: the hub refuses that first
        expected = "invalid_json"
    if rng.random() < 0.05:
        payload = mutate(rng, payload, [b"NaN", b"1e999", b"-0"])
        if not payload.strip():
            return command, payload, None
        try:
            json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            return command, payload, "invalid_json"
        expected = None
    return command, payload, expected


async def fuzz_commands(inputs: int, seed: int) -> Findings:
    """Send ``inputs`` requests through the router of a real hub; check every answer."""
    rng = random.Random(seed)
    findings = Findings("commands")
    router_log = logging.getLogger("gateway.commands.router")
    caught = _LastError()
    level, propagate = router_log.level, router_log.propagate
    router_log.addHandler(caught)
    router_log.setLevel(logging.ERROR)
    router_log.propagate = False  # the failures are reported here, with their inputs
    with tempfile.TemporaryDirectory(prefix="cg-fuzz-") as tmp:
        broker = default_broker(Path(tmp) / "broker")
        try:
            # A fresh hub every SESSION inputs: the audit log (which records every refusal)
            # stays the size of a busy day's, so audit/verify costs what it would on a hub.
            for session, start in enumerate(range(0, inputs, SESSION)):
                config = bench_config(Path(tmp) / f"hub{session}", broker.port, "fuzz-commands")
                async with running_hub(config) as hub:
                    await _fuzz_hub(hub, rng, min(SESSION, inputs - start), findings, caught)
        finally:
            broker.stop()
            router_log.removeHandler(caught)
            router_log.setLevel(level)
            router_log.propagate = propagate
    findings.inputs = inputs
    return findings


async def _fuzz_hub(
    hub: Any, rng: random.Random, inputs: int, findings: Findings, caught: _LastError
) -> None:
    registry = hub.registry
    assert registry is not None
    registry.add_pairer("mdns", _Pairer())
    registry.add_pairer("ble", _Pairer())
    simulated = known_devices(hub, 4, "fuzz")
    stable = [f"shellyplus1pm-{i:012x}" for i in range(6)]
    macs = [f"F2:CA:FE:00:00:{i:02X}" for i in range(4)]

    def sight() -> list[str]:
        """Report every stand-in device seen again; return their ids."""
        wifi = [registry.seen(Sighting("mdns", s, "shelly", "127.0.0.1:80")) for s in stable]
        return wifi + [registry.seen(Sighting("ble", m, "bthome", m)) for m in macs]

    registered = sight()
    pools: dict[str, list[Any]] = {
        "flag": [*FLAGS, "Health", "", "bluetooth"],
        "state": ["on", "off", "coarse", "ON", ""],
        "device": [*simulated, *registered, "0" * 16, "ABCDEF0123456789", "xyz"],
        "enabled": [True, False, 1, "true"],
        "duration": [0, 1, 60, 3600, 86400, -1, 0.5, 10**400, 1e400, "10"],
        "transport": ["mdns", "ble", None, "zigbee"],
        "name": ["Kitchen", "", " ", "a" * 65, "Ünïcødé", "tab\tname", "x" * 64],
        "kid": ["00" * 8, "zz", "", "ab" * 100],
        "epoch": [0, 1, 2, -1, 10**30, 2**63, True, "1", 1.0],
        "scope": ["device", "all", "", "ALL", "devices"],
        "count": [1, 10, 100, 1000, 0, -1, 10**30, 10**400, True, "5", 1.5],
        "key": [
            "00112233445566778899aabbccddeeff",
            "00112233445566778899AABBCCDDEEFF",
            "00" * 15,
            "zz" * 16,
            "",
            None,
            16,
        ],
    }
    findings.covered = hub.router.commands
    takes = await command_params(hub.router, pools)
    findings.parameters = takes
    for n in range(inputs):
        if n % 100 == 0:
            sight()
        command, payload, expected = command_request(rng, takes, pools)
        caught.exc = None
        task = asyncio.create_task(hub.router.dispatch(command, payload), name="fuzz-dispatch")
        hangs = sum(c["count"] for k, c in findings.crashes.items() if k.startswith("Hang"))
        # Once a hang is known, waiting the full time for every repeat only slows the campaign.
        patience = ANSWER_TIMEOUT_S if hangs < KNOWN_HANGS else ANSWER_TIMEOUT_S / 10
        done, _ = await asyncio.wait({task}, timeout=patience)
        if not done:  # a request that is never answered: report where it waits
            findings.crash(Hang(task, patience), (command, payload[:200]))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            continue
        try:
            response = task.result()
            encoded = response.encode()
        except Exception as exc:  # noqa: BLE001 - dispatch must never raise
            findings.crash(exc, (command, payload[:200]))
            continue
        _check(findings, command, payload, expected, response.body, encoded, caught)


def _check(
    findings: Findings,
    command: str,
    payload: bytes,
    expected: str | None,
    body: dict[str, Any],
    encoded: bytes,
    caught: _LastError,
) -> None:
    example = (command, payload[:300])
    status = body.get("status")
    if status == "ok":
        findings.outcomes[f"{command}:ok"] += 1
        if caught.exc is not None:
            findings.crash(caught.exc, example)
        if expected is not None:
            findings.crash(AssertionError(f"a bad request ({expected}) was answered ok"), example)
        return
    error = body.get("error") or {}
    code = error.get("code")
    if status != "error" or code not in ERROR_CODES or not isinstance(error.get("message"), str):
        findings.crash(AssertionError(f"malformed answer {encoded[:200]!r}"), example)
        return
    if code == "internal":
        findings.crash(caught.exc or RuntimeError("internal error without a log record"), example)
        return
    if caught.exc is not None:  # a refusal listener (the audit of refusals) raised
        findings.crash(caught.exc, example)
        return
    if expected not in (None, "any") and code != expected:
        findings.crash(AssertionError(f"expected {expected}, answered {code}"), example)
        return
    findings.outcomes[
        "?:unknown_command" if code == "unknown_command" else f"{command}:{code}"
    ] += 1
