"""Fuzz target ``txt``: mDNS instance names and TXT properties through the Shelly driver's
``parse_announcement`` (allowed: ``DeviceError``)."""

from __future__ import annotations

import random

from bench.fuzz.findings import Findings
from bench.fuzz.values import random_text
from bench.fuzz_envelope import mutate
from drivers.shelly import DRIVER as SHELLY
from gateway.errors import DeviceError


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
