"""Envelope seal and open rates per algorithm, against the raw AEAD rate measured in the same run.

``python -m bench.envelope [--records N] [--runs R]`` seals N readings whose CBOR plaintext is
about 200 bytes (100 devices, batches of 1000, the way the pipeline calls the sealer), then
opens them all with a fresh consumer, for alg 1 (AES-128-GCM) and alg 24 (ChaCha20/Poly1305).
Seal includes the outbox row; open includes topic and header checks and the replay bitmap.
Prints medians of R runs and their ratio to a bare AEAD encrypt of the same plaintext, and
writes bench/results/envelope.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from bench.common import peak_rss_mib, write_results
from gateway.envelope.consumer import Consumer
from gateway.envelope.format import encode_plaintext
from gateway.envelope.sealer import Sealer
from gateway.model import Observation, OutboxRow, Value

HUB_ID = "bench-hub"
TARGET_PLAINTEXT = 200
BATCH = 1000
DEVICES = 100
ALGS = {1: "A128GCM", 24: "ChaCha20/Poly1305"}


def reading_fields() -> dict[str, Value]:
    """Return sensor-like fields whose CBOR plaintext (with ts) is TARGET_PLAINTEXT bytes."""
    fields: dict[str, Value] = {
        "temperature": 21.53,
        "humidity": 45.125,
        "pressure": 1013.25,
        "battery": 87,
        "rssi": -61,
        "voltage": 3.021,
        "power": 12.5,
        "switch": True,
        "firmware": "1.4.2",
        "note": "",
    }
    for _ in range(2):  # twice: the padding's own length header may grow by a byte
        size = len(encode_plaintext(time.time(), fields))
        fields["note"] = "x" * max(0, len(str(fields["note"])) + TARGET_PLAINTEXT - size)
    return fields


def observations(count: int, fields: dict[str, Value]) -> list[Observation]:
    """Return ``count`` observations spread over DEVICES devices."""
    now = time.time()
    return [
        Observation(
            device=f"{i % DEVICES:016x}",
            category="telemetry.environment",
            ts=now + i * 1e-3,
            fields=fields,
        )
        for i in range(count)
    ]


def median_rate(runs: int, count: int, work: Callable[[], object]) -> float:
    """Return the median of ``runs`` rates of ``work`` doing ``count`` items per call."""
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_alg(alg: int, batch: list[Observation], runs: int) -> dict[str, Any]:
    """Measure seal and open rates for one algorithm."""
    hub_key = Ed25519PrivateKey.generate()
    recipient = X25519PrivateKey.generate()
    sealed: list[OutboxRow] = []

    def seal_all() -> None:
        sealer = Sealer(
            hub_id=HUB_ID,
            topic_root=f"consentgate/{HUB_ID}",
            signing_key=hub_key,
            recipient=recipient.public_key(),
            alg=alg,
        )
        sealed.clear()
        for start in range(0, len(batch), BATCH):
            sealed.extend(sealer.seal_batch(batch[start : start + BATCH], lambda _c: 86400.0))

    seal_rate = median_rate(runs, len(batch), seal_all)
    records = [row for row in sealed if not row.retain]
    announcements = [row.payload for row in sealed if row.retain]

    def open_all() -> None:
        consumer = Consumer(recipient, {HUB_ID: hub_key.public_key()})
        for announcement in announcements:
            consumer.accept_announcement(announcement)
        for row in records:
            consumer.open(row.topic, row.payload)

    open_rate = median_rate(runs, len(records), open_all)
    plaintext = encode_plaintext(time.time(), batch[0].fields)
    aead = AESGCM(bytes(16)) if alg == 1 else ChaCha20Poly1305(bytes(32))
    nonce = bytes(12)

    def raw() -> None:
        for _ in range(len(batch)):
            aead.encrypt(nonce, plaintext, b"")

    raw_rate = median_rate(runs, len(batch), raw)
    return {
        "alg": alg,
        "name": ALGS[alg],
        "seal_per_s": round(seal_rate),
        "open_per_s": round(open_rate),
        "raw_aead_per_s": round(raw_rate),
        "seal_vs_raw_aead": round(seal_rate / raw_rate, 3),
        "open_vs_raw_aead": round(open_rate / raw_rate, 3),
        "record_bytes": len(records[0].payload),
        "plaintext_bytes": len(plaintext),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per algorithm."""
    parser = argparse.ArgumentParser(prog="python -m bench.envelope")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    batch = observations(args.records, reading_fields())
    results = [bench_alg(alg, batch, args.runs) for alg in ALGS]
    for r in results:
        print(
            f"alg {r['alg']:>2} {r['name']:<18} seal {r['seal_per_s']:>8,}/s  "
            f"open {r['open_per_s']:>8,}/s  (raw AEAD {r['raw_aead_per_s']:>9,}/s; "
            f"plaintext {r['plaintext_bytes']} B, record {r['record_bytes']} B)"
        )
    path = write_results(
        "envelope",
        {
            "records": args.records,
            "runs": args.runs,
            "algs": results,
            "peak_rss_mib": peak_rss_mib(),
        },
    )
    print(f"peak RSS {peak_rss_mib():.1f} MiB; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
