"""Fuzz every input the hub takes from outside: BLE adverts, TXT records, RPC answers, MQTT
commands, and envelopes at the consumer.

``python -m bench.fuzz_inputs [--quick] [--scale X] [--seed S] [--only TARGET]``. Each target
starts from genuine inputs and feeds mutated and random ones to the code the transports call:

- ``ble``: ``BleIngest`` classify -> ``is_duplicate`` -> ``decode`` (drivers.ble match, dedupe,
  the BTHome fast path, bthome-ble, theengsdecoder) and ``driver.model`` (the candidate path),
  with genuine, wrong and missing bind keys. The only typed error, ``DecodeError``, is caught
  inside ``BleIngest`` (counted), so anything escaping is a crash.
- ``txt``: ``drivers.shelly`` ``parse_announcement`` on instance names and TXT properties as
  zeroconf hands them over (bytes keys, bytes or None values); allowed: ``DeviceError``.
- ``rpc``: ``parse_info`` and ``parse_status`` on what ``json.loads`` makes of mutated device
  answers (bodies it refuses are the transport's typed ``bad_json``) and on random JSON values;
  allowed: ``DeviceError``.
- ``commands``: ``Router.dispatch`` of a real hub (in this process, its database in a temporary
  directory, a loopback broker) for every registered command with random and mutated JSON,
  plus requests that are bad by construction (not JSON, not an object, unknown command, an
  unknown parameter, a bad transaction id, over 64 KiB). Every answer must be ``ok`` or an
  ``error`` with a stable code other than ``internal`` (which means a handler raised), within
  ``ANSWER_TIMEOUT_S`` (a request never answered is reported with where its handler waits);
  every bad-by-construction request must be answered with an error. A fresh hub serves every
  ``SESSION`` requests; paired Wi-Fi and BLE devices come from sightings and a stand-in pairer.
- ``envelopes``: ``bench.fuzz_envelope`` (``Consumer.accept_announcement``, ``Consumer.open``,
  ``inspect.describe``); allowed: the typed envelope errors.

Crashes are grouped by exception type and the innermost project frame, each with one input
that causes it. Writes bench/results/fuzz_inputs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import random
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.common import bench_config, default_broker, known_devices, running_hub, write_results
from bench.fuzz_envelope import mutate
from bench.fuzz_envelope import run as fuzz_envelopes
from drivers.ble import Advert
from drivers.ble.advert import uuid16
from drivers.ble.simulator import BleSimulator
from drivers.shelly import DRIVER as SHELLY
from gateway.commands.router import ERROR_CODES, MAX_REQUEST_BYTES
from gateway.config import BleConfig
from gateway.consent.catalogue import FLAGS
from gateway.counters import Counters
from gateway.devices.model import Candidate, DeviceInfo, Sighting
from gateway.discovery.ble_ingest import BleIngest
from gateway.errors import DeviceError

TARGETS: Final = ("ble", "txt", "rpc", "commands", "envelopes")
FULL: Final = {
    "ble": 300_000,
    "txt": 150_000,
    "rpc": 150_000,
    "commands": 60_000,
    "envelopes": 400_000,
}
QUICK: Final = {"ble": 6_000, "txt": 3_000, "rpc": 3_000, "commands": 4_000, "envelopes": 4_000}
PROJECT_DIRS: Final = ("/gateway/", "/drivers/")


@dataclass
class Findings:
    """Outcomes of one target: counts by typed outcome, and crashes grouped by signature."""

    target: str
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: dict[str, dict[str, Any]] = field(default_factory=dict)
    covered: tuple[str, ...] = ()  # commands: every command the router has registered

    def crash(self, exc: BaseException, example: object) -> None:
        """Record an untyped exception raised on ``example``."""
        signature = _signature(exc)
        entry = self.crashes.setdefault(
            signature,
            {"count": 0, "example": _shown(example), "error": f"{type(exc).__name__}: {exc}"[:300]},
        )
        entry["count"] += 1

    @property
    def crash_count(self) -> int:
        """Return how many inputs crashed."""
        return sum(int(c["count"]) for c in self.crashes.values())

    def summary(self) -> dict[str, Any]:
        """Return the JSON-ready figures of this target."""
        return {
            "target": self.target,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "crashes": self.crash_count,
            "crash_kinds": self.crashes,
            "outcomes": dict(self.outcomes.most_common()),
        }


def _signature(exc: BaseException) -> str:
    if isinstance(exc, Hang):
        waits = [f for f in exc.frames if any(d in f for d in PROJECT_DIRS)]
        return "Hang at " + _project_path((waits or exc.frames or ["?"])[-1])
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if any(d in f.filename for d in PROJECT_DIRS)]
    if not (ours or frames):
        return type(exc).__name__
    where = (ours or frames)[-1]
    return f"{type(exc).__name__} at {_project_path(where.filename)}:{where.lineno} ({where.name})"


def _project_path(path: str) -> str:
    for marker in PROJECT_DIRS:
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    return path


def _shown(example: object) -> str:
    text = repr(example)
    return text if len(text) <= 600 else text[:600] + "..."


# --- random values -----------------------------------------------------------------------
WEIRD_NUMBERS: Final = (
    0,
    -1,
    1,
    2**31,
    -(2**63),
    2**64,
    10**30,
    10**400,
    1e308,
    -1e-308,
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    0.5,
    3600.0,
    1e400,
)


def random_text(rng: random.Random) -> str:
    """Return a short string mixing ASCII, control characters and other planes."""
    pools = (
        "abcdefghijklmnopqrstuvwxyz0123456789-_.:",
        "\x00\x07\n\t\x1b\x7f\u200b",
        "äöüéÅ漢字😀\ud7ff\ufffd",
        "ABCDEF0123456789",
    )
    pool = rng.choice(pools)
    return "".join(rng.choice(pool) for _ in range(rng.choice((0, 1, 3, 8, 16, 70, 300))))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Return a random JSON-compatible value (NaN and huge integers included)."""
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice(WEIRD_NUMBERS)
    if kind == 1:
        return random_text(rng)
    if kind == 2:
        return rng.choice((None, True, False))
    if kind == 3:
        return rng.randint(-1000, 100_000)
    if kind == 4:
        return rng.uniform(-1e6, 1e6)
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 6:
        return {random_text(rng): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return {
        rng.choice(
            (
                "id",
                "gen",
                "ver",
                "mac",
                "tC",
                "apower",
                "sys",
                "switch:0",
                "version",
                "available_updates",
                "stable",
            )
        ): random_json(rng, depth + 1)
        for _ in range(rng.randint(1, 3))
    }


def mutate_tree(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """Return ``value`` (a JSON tree) with one subtree replaced, deleted, or added to."""
    if isinstance(value, dict) and value and depth < 6:
        out = dict(value)
        key = rng.choice(list(out))
        action = rng.randrange(4)
        if action == 0:
            del out[key]
        elif action == 1:
            out[key] = random_json(rng)
        elif action == 2:
            out[rng.choice((key, random_text(rng)))] = random_json(rng)
        else:
            out[key] = mutate_tree(rng, out[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 6:
        out_list = list(value)
        index = rng.randrange(len(out_list))
        out_list[index] = mutate_tree(rng, out_list[index], depth + 1)
        return out_list
    return random_json(rng)


# --- BLE advertisements ------------------------------------------------------------------
BTHOME: Final = uuid16(0xFCD2)
MIBEACON: Final = uuid16(0xFE95)
SCALE: Final = uuid16(0x181D)
BODY: Final = uuid16(0x181B)
UUIDS: Final = (
    BTHOME,
    MIBEACON,
    SCALE,
    BODY,
    uuid16(0x180F),
    "0000fcd2-0000-1000-8000-00805f9b34fc",
)
VECTORS: Final = (  # TESTING.md: vectors that decode with the reference libraries
    ("A4:C1:38:00:00:01", BTHOME, "4000a4016402ca0803bf13"),
    ("AA:BB:CC:DD:EE:FF", MIBEACON, "5020aa0101ffeeddccbbaa0d1004ea00c801"),
    ("C8:47:8C:00:00:01", SCALE, "228638e8070b18131400"),
)


def genuine_adverts() -> tuple[list[Advert], dict[str, bytes | None]]:
    """Return genuine advertisements (simulated devices and test vectors) and their bind keys."""
    sim = BleSimulator(30, repeats=1, encrypt_every=3)
    adverts = []
    for round_no in range(4):
        for index in range(len(sim.devices)):
            device, data = sim.message(index, 1_700_000_000.0 + round_no)
            adverts.append(
                Advert(
                    device.address,
                    data.rssi,
                    data.local_name,
                    dict(data.service_data),
                    dict(data.manufacturer_data),
                    tuple(data.service_uuids),
                )
            )
    adverts += [Advert(a, -60, None, {u: bytes.fromhex(h)}) for a, u, h in VECTORS]
    keys = {d.address: d.bind_key for d in sim.devices}
    return adverts, keys


def mutate_advert(
    rng: random.Random, advert: Advert, others: list[bytes], addresses: list[str]
) -> Advert:
    """Return ``advert`` with its payload, UUIDs, name, RSSI or address changed."""
    service = dict(advert.service_data)
    manufacturer = dict(advert.manufacturer_data)
    name, rssi, address = advert.name, advert.rssi, advert.address
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(10)
        uuid = rng.choice(list(service)) if service else rng.choice(UUIDS)
        if action <= 3:
            service[uuid] = mutate(rng, service.get(uuid, b""), others)
        elif action == 4:
            service[uuid] = rng.randbytes(rng.choice((0, 1, 2, 5, 12, 20, 31, 64)))
        elif action == 5:  # the same bytes under another driver's UUID
            service[rng.choice(UUIDS)] = service.pop(uuid, b"")
        elif action == 6:
            service[rng.choice(UUIDS)] = rng.choice(others)
        elif action == 7:
            manufacturer[rng.choice((0x0499, 0x004C, 0xFFFF, 0))] = rng.randbytes(
                rng.randint(0, 24)
            )
        elif action == 8:
            name = rng.choice((None, "", random_text(rng), "ATC_123456", "MI SCALE2"))
            rssi = rng.choice((rssi, -127, 0, 20, -100, -101, 127))
        else:
            address = rng.choice(addresses)
    return Advert(address, rssi, name, service, manufacturer, advert.service_uuids)


def fuzz_ble(inputs: int, seed: int) -> Findings:
    """Feed ``inputs`` advertisements through classify, dedupe, decode and model."""
    rng = random.Random(seed)
    findings = Findings("ble")
    adverts, keys = genuine_adverts()
    payloads = [p for a in adverts for p in a.service_data.values()]
    addresses = sorted({a.address for a in adverts}) + [
        ":".join(f"{rng.randrange(256):02X}" for _ in range(6)) for _ in range(20)
    ]
    # Genuine keys for the simulated devices, wrong or malformed keys for some others.
    for address in addresses[-20:]:
        keys[address] = rng.choice((None, rng.randbytes(16), rng.randbytes(15), b""))
    counters = Counters()
    ingest = BleIngest(BleConfig(), counters, bind_keys=keys.get)
    now = 0.0
    for n in range(inputs):
        advert = rng.choice(adverts)
        if rng.random() < 0.85:
            advert = mutate_advert(rng, advert, payloads, addresses)
        now += rng.choice((0.0, 0.0005, 0.5, 11.0))
        if n % 5000 == 0:
            ingest = BleIngest(BleConfig(), counters, bind_keys=keys.get)
        try:
            hit = ingest.classify(advert)
            if hit is not None:
                driver, payload = hit
                if not ingest.is_duplicate(advert.address, driver, payload, now):
                    ingest.decode(advert, driver, payload, now)
                driver.model(advert, payload, now)
        except Exception as exc:  # noqa: BLE001 - a fuzz finding, recorded with its input
            findings.crash(exc, advert)
    findings.inputs = inputs
    findings.outcomes.update({k: v for k, v in counters.snapshot().items() if v})
    return findings


# --- TXT records and RPC answers -----------------------------------------------------------
def genuine_txt(rng: random.Random) -> tuple[str, dict[bytes, bytes | None]]:
    """Return a Shelly Gen2+ instance name and TXT properties as zeroconf reports them."""
    app = rng.choice(("Plus1PM", "Pro4PM", "PlusHT", "Plus2PM"))
    device = f"shelly{app.lower()}-{rng.randbytes(6).hex()}"
    props: dict[bytes, bytes | None] = {
        b"gen": rng.choice((b"2", b"3")),
        b"app": app.encode(),
        b"ver": b"1.4.2",
        b"id": device.encode(),
    }
    return device, props


def mutate_txt(
    rng: random.Random, instance: str, props: dict[bytes, bytes | None]
) -> tuple[str, dict[bytes, bytes | None]]:
    """Return the instance name and properties with keys or values changed."""
    out = dict(props)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(8)
        key = rng.choice(list(out)) if out else b"gen"
        if action == 0:
            out.pop(key, None)
        elif action == 1:
            out[key] = None
        elif action == 2:
            out[key] = rng.choice(
                (
                    b"",
                    rng.randbytes(rng.randint(1, 12)),
                    b"\xff\xfe",
                    random_text(rng).encode("utf-8", "surrogatepass"),
                )
            )
        elif action == 3:
            out[key.upper()] = mutate(rng, out.get(key) or b"x", [b"2", b"Plus1PM"])
        elif action == 4:
            out[rng.randbytes(rng.randint(0, 6))] = rng.randbytes(rng.randint(0, 6))
        elif action == 5:
            out[key] = rng.choice((b"1", b"99", b"100", b"02", b"2.0", b"\xd9\xa2", b"-2"))
        elif action == 6:
            instance = random_text(rng)
        else:
            out[key] = mutate(rng, out.get(key) or b"", [b"shellyplus1pm-a8032ab12345"])
    return instance, out


def fuzz_txt(inputs: int, seed: int) -> Findings:
    """Feed ``inputs`` instance names and TXT records to the Shelly announcement parser."""
    rng = random.Random(seed)
    findings = Findings("txt")
    for _ in range(inputs):
        instance, props = genuine_txt(rng)
        if rng.random() < 0.9:
            instance, props = mutate_txt(rng, instance, props)
        try:
            SHELLY.parse_announcement(instance, props)
        except DeviceError as exc:
            findings.outcomes[f"txt:{exc.reason}"] += 1
        except Exception as exc:  # noqa: BLE001 - a fuzz finding
            findings.crash(exc, (instance, props))
        else:
            findings.outcomes["txt:ok"] += 1
    findings.inputs = inputs
    return findings


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


# --- MQTT commands -----------------------------------------------------------------------
PARAMS: Final = (
    "flag",
    "state",
    "device",
    "enabled",
    "duration",
    "transport",
    "name",
    "kid",
    "epoch",
    "scope",
    "count",
    "key",
)
# The parameters each command takes (the API reference); a command missing here gets any.
COMMAND_PARAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "health": (),
    "keys/rotate": (),
    "epoch/resend": ("kid", "epoch"),
    "consent/get": (),
    "consent/set": ("flag", "state", "device"),
    "try_now": ("enabled",),
    "permit_join": ("duration", "transport"),
    "pair": ("device",),
    "unpair": ("device",),
    "devices": (),
    "device": ("device",),
    "rename": ("device", "name"),
    "export": ("scope", "device"),
    "erase": ("scope", "device"),
    "restrict": ("enabled",),
    "audit/tail": ("count",),
    "audit/verify": (),
    "bind_key": ("device", "key"),
}


SESSION: Final = 5_000
ANSWER_TIMEOUT_S: Final = 5.0
KNOWN_HANGS: Final = 2


class Hang(Exception):  # noqa: N818 - named for the report line, "Hang at <frame>"
    """A request not answered within ANSWER_TIMEOUT_S; carries where the handler waits."""

    def __init__(self, task: asyncio.Task[Any], waited_s: float) -> None:
        where, waited = _await_chain(task.get_coro())
        super().__init__(
            f"no answer within {waited_s:g} s; waiting at "
            + " -> ".join(_project_path(w) for w in where[-4:])
            + f" on {waited}"
        )
        self.frames = where


def _await_chain(coro: Any) -> tuple[list[str], str]:
    """Return the frames of a suspended coroutine chain, outermost first, and what it awaits."""
    frames: list[str] = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})")
        inner = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        if inner is None or not (hasattr(inner, "cr_frame") or hasattr(inner, "ag_frame")):
            return frames, repr(inner)[:200]
        coro = inner
    return frames, "?"


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
    if rng.random() < 0.35:
        return random_json(rng)
    return rng.choice(pools[name])


def command_request(
    rng: random.Random, commands: tuple[str, ...], pools: Mapping[str, list[Any]]
) -> tuple[str, bytes, str | None]:
    """Return (command, payload, the error expected if the request is bad by construction)."""
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
    own = COMMAND_PARAMS.get(command, PARAMS)
    names = list(own) if rng.random() < 0.6 else rng.sample(own, rng.randint(0, len(own)))
    if rng.random() < 0.1:
        names.append(rng.choice(PARAMS))
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
    commands = hub.router.commands
    findings.covered = commands
    for n in range(inputs):
        if n % 100 == 0:
            sight()
        command, payload, expected = command_request(rng, commands, pools)
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


# --- the campaign ------------------------------------------------------------------------
def run_target(target: str, inputs: int, seed: int) -> Findings:
    """Fuzz one target with ``inputs`` inputs; return its findings."""
    started = time.perf_counter()
    if target == "ble":
        findings = fuzz_ble(inputs, seed)
    elif target == "txt":
        findings = fuzz_txt(inputs, seed)
    elif target == "rpc":
        findings = fuzz_rpc(inputs, seed)
    elif target == "commands":
        findings = asyncio.run(fuzz_commands(inputs, seed))
    elif target == "envelopes":
        findings = Findings("envelopes", inputs)
        try:
            findings.outcomes.update(fuzz_envelopes(inputs, seed))
        except Exception as exc:  # noqa: BLE001 - the envelope fuzzer stops at its first crash
            findings.crash(exc, "see the input bench.fuzz_envelope printed")
    else:
        raise ValueError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    findings.seconds = time.perf_counter() - started
    return findings


def run_campaign(
    budget: Mapping[str, int], seed: int, report: Callable[[Findings], None] | None = None
) -> dict[str, Any]:
    """Fuzz every target in ``budget`` (target -> inputs); return the JSON-ready results."""
    results = []
    for target, inputs in budget.items():
        findings = run_target(target, inputs, seed)
        if report is not None:
            report(findings)
        results.append(findings.summary())
    return {
        "seed": seed,
        "inputs": sum(r["inputs"] for r in results),
        "crashes": sum(r["crashes"] for r in results),
        "targets": results,
    }


def print_findings(findings: Findings) -> None:
    """Print one line per target, then each crash kind with an input that causes it."""
    print(
        f"{findings.target:<10} {findings.inputs:>9,} inputs {findings.seconds:7.1f} s "
        f"{findings.crash_count:>7,} crashes",
        flush=True,
    )
    for signature, crash in findings.crashes.items():
        print(
            f"    CRASH x{crash['count']}: {signature}\n      {crash['error']}\n"
            f"      input: {crash['example']}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz campaign; exit 1 if anything crashed."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_inputs")
    parser.add_argument("--quick", action="store_true", help="20k inputs in all (CI)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=TARGETS, action="append")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    base = QUICK if args.quick else FULL
    budget = {
        t: max(1, round(n * args.scale)) for t, n in base.items() if not args.only or t in args.only
    }
    result = run_campaign(budget, args.seed, print_findings)
    print(f"{result['inputs']:,} inputs, {result['crashes']:,} crashes")
    print(f"written {write_results('fuzz_inputs', result)}")
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
