"""Fuzz the consumer's parsers: every input must be opened or refused with a typed error.

``python -m bench.fuzz_envelope [--inputs N] [--seed S]`` builds genuine announcements and
records (both algorithms), then feeds N inputs, each a mutation of a genuine one (bit flips,
byte overwrites, insertions, deletions, truncation, splices of two envelopes), a mutated
announcement body validly signed by the trusted hub key, random bytes, or random CBOR, to
``Consumer.accept_announcement``, ``Consumer.open`` (sometimes on a mutated topic) and
``inspect.describe``. It counts the outcomes by error code and stops with the offending input in
hex on any other exception. Writes bench/results/fuzz_envelope.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.common import write_results
from gateway.envelope.consumer import Consumer
from gateway.envelope.errors import (
    ExpiredEpochError,
    ForgeryError,
    MalformedError,
    ReplayError,
    UnknownEpochError,
    UntrustedHubError,
    WrongRecipientError,
)
from gateway.envelope.format import parse_announcement, signed_message
from gateway.envelope.inspect import describe
from gateway.envelope.sealer import Sealer
from gateway.model import Observation, OutboxRow, Value

HUB_ID = "fuzz-hub"
TYPED = (
    MalformedError,
    UnknownEpochError,
    ReplayError,
    ForgeryError,
    ExpiredEpochError,
    UntrustedHubError,
    WrongRecipientError,
)


def corpus() -> tuple[Consumer, Ed25519PrivateKey, list[OutboxRow], list[OutboxRow]]:
    """Return a consumer that accepted two epochs, the hub key, announcements and records."""
    hub_key = Ed25519PrivateKey.generate()
    recipient = X25519PrivateKey.generate()
    rows: list[OutboxRow] = []
    for index, alg in enumerate((1, 24)):
        sealer = Sealer(
            hub_id=HUB_ID,
            topic_root=f"consentgate/{HUB_ID}",
            signing_key=hub_key,
            recipient=recipient.public_key(),
            alg=alg,
            last_epoch=index,
        )
        readings: list[tuple[str, dict[str, Value]]] = [
            ("telemetry.environment", {"t": 21.5, "h": 40}),
            ("health", {"weight": 72.3, "blob": b"\x00\xff", "ok": True, "n": None}),
            ("location.coarse", {"region": "Zürich"}),
            ("usage", {}),
        ]
        batch = [
            Observation(f"{i:016x}", category, time.time(), fields)
            for i, (category, fields) in enumerate(readings)
        ]
        rows += sealer.seal_batch(batch * 80, lambda _c: 60.0)
    consumer = Consumer(recipient, {HUB_ID: hub_key.public_key()})
    announcements = [row for row in rows if row.retain]
    for row in announcements:
        consumer.accept_announcement(row.payload)
    return consumer, hub_key, announcements, [row for row in rows if not row.retain]


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """Return ``data`` with 1-4 random edits."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out)) if out else 0
        kind = rng.randrange(7)
        if kind == 0 and out:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[at] = rng.choice((0x00, 0xFF, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x40, 0x5F, 0xBF))
        elif kind == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 9))
        elif kind == 3 and out:
            del out[at : at + rng.randint(1, 9)]
        elif kind == 4:
            del out[at:]
        elif kind == 5:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            out = out[:at] + bytearray(other[cut:])
        else:
            out += rng.randbytes(rng.randint(1, 9))
    return bytes(out)


def random_cbor(rng: random.Random, depth: int = 0) -> object:
    """Return a random CBOR-encodable value, sometimes tagged."""
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randint(-(2**64), 2**64 - 1)
    if kind == 1:
        return rng.randbytes(rng.randint(0, 40))
    if kind == 2:
        return "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 12)))
    if kind == 3:
        return rng.choice((None, True, False, 1.5, float("nan"), -0.0))
    if kind == 4:
        return rng.choice((16, 6, 1, 4, -65537, -65538))
    if kind == 5:
        return rng.choice(("consentgate/1", "v", "gw", "ep", "rkid", "alg", "ts", "fields"))
    if kind == 6:
        return [random_cbor(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 7:
        keys = [rng.choice((1, 4, 6, -65537, -65538, "v", "ts")) for _ in range(rng.randint(0, 4))]
        return {k: random_cbor(rng, depth + 1) for k in keys}
    tag = rng.choice((16, 0, 1, 2, 24, 28, 29, 30, 35, 258, 55799))
    return cbor2.CBORTag(tag, random_cbor(rng, depth + 1))


def run(inputs: int, seed: int) -> Counter[str]:
    """Feed ``inputs`` inputs; return outcome counts; raise on any untyped exception."""
    rng = random.Random(seed)
    consumer, hub_key, announcements, records = corpus()
    genuine = [row.payload for row in announcements + records]
    bodies = [parse_announcement(row.payload).body for row in announcements]
    outcomes: Counter[str] = Counter()

    def attempt(name: str, call: Callable[..., object], *args: object) -> None:
        try:
            call(*args)
        except TYPED as exc:
            outcomes[f"{name}:{exc.code}"] += 1
            return
        except Exception:
            shown = [a.hex() if isinstance(a, bytes) else a for a in args]
            print(f"CRASH in {name} on input {shown}", file=sys.stderr)
            raise
        outcomes[f"{name}:ok"] += 1

    for _ in range(inputs):
        choice = rng.random()
        if choice < 0.3:
            data = mutate(rng, rng.choice(announcements).payload, genuine)
        elif choice < 0.7:
            data = mutate(rng, rng.choice(genuine), genuine)
        elif choice < 0.8:
            # A trusted hub signing a damaged body: reaches the core parser and HPKE.
            body = mutate(rng, rng.choice(bodies), bodies)
            data = cbor2.dumps([body, hub_key.sign(signed_message(body))])
        elif choice < 0.9:
            data = rng.randbytes(rng.randint(0, 300))
        else:
            data = cbor2.dumps(random_cbor(rng))
        record = rng.choice(records)
        topic = record.topic
        if rng.random() < 0.05:
            topic = mutate(rng, topic.encode(), [r.topic.encode() for r in records[:4]]).decode(
                "utf-8", "replace"
            )
        attempt("open", consumer.open, topic, data)
        attempt("announcement", consumer.accept_announcement, data)
        attempt("describe", describe, data)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer and print the outcome counts."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_envelope")
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    outcomes = run(args.inputs, args.seed)
    elapsed = time.perf_counter() - start
    for name, count in sorted(outcomes.items()):
        print(f"{name:<32} {count:>10,}")
    print(f"{args.inputs:,} inputs x 3 parsers in {elapsed:.1f} s; no untyped exception")
    path = write_results(
        "fuzz_envelope",
        {
            "inputs": args.inputs,
            "seed": args.seed,
            "seconds": round(elapsed, 1),
            "outcomes": dict(sorted(outcomes.items())),
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
