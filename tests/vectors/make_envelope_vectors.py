"""Generate tests/vectors/envelope-v1.json: envelope v1 test vectors (run once, check in).

Two epochs of one hub (epoch 1 with alg 1 = A128GCM, epoch 2 with alg 24 = ChaCha20/Poly1305,
chained by ``prev``) and six records in each; then ``estimated``: epoch 3 (alg 1, chained to
epoch 2), announced with ``"est": true`` as a hub does before its clock is trusted, and two
records sealed under it (a consumer opens them flagged ``ts_estimated``). The estimated epoch
was added to the checked-in file after the first two; ``--estimated-only`` prints just that
section, to add it to the file without changing the others. Keys and epoch secrets are fixed;
the HPKE wrapping is randomized by design, so running this again gives other announcement bytes
(and kids, and record bytes): the checked-in file is the reference, not this script's output.

Every byte string in the file is hex. Records whose fields hold byte strings list those field
names in ``bytes_fields`` (JSON cannot tell hex text from bytes). ``hub_private_key`` lets a
test re-create the announcements byte for byte from the epoch secrets and wrapped secrets.

Usage: python tests/vectors/make_envelope_vectors.py [OUT.json]
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.envelope.format import announcement_hash
from gateway.envelope.sealer import REASON_START, Sealer
from gateway.model import Observation, Value

HUB_ID = "vector-hub-01"
TOPIC_ROOT = f"consentgate/{HUB_ID}"
EPOCH_START = (1_700_000_000.25, 1_700_003_700.75)
ESTIMATED_START = 1_767_225_600.5  # the hub's estimate: its floor (a build date) plus uptime
MAX_AGE_S = 3600.0
DEVICES = ("0123456789abcdef", "fedcba9876543210", "00000000000000ff")


def fixed_clock(at: float) -> Callable[[], float]:
    """Return a clock that always reads ``at``."""
    return lambda: at


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"consentgate envelope-v1 test vector " + label.encode()).digest()


def observations(epoch_index: int) -> list[Observation]:
    """Return the readings sealed in the vector's epoch ``epoch_index`` (0 or 1)."""
    base = EPOCH_START[epoch_index] + 1.5
    rows: list[tuple[str, str, dict[str, Value]]] = [
        (DEVICES[0], "telemetry.environment", {"temperature": 21.5, "humidity": 40}),
        (DEVICES[1], "health", {"weight": 72.35, "bmi": 22.1, "steps": 10_234}),
        (DEVICES[0], "device.basic", {"online": True, "fw": "1.2.3", "upgrade": None}),
        (DEVICES[2], "location.coarse", {"region": "Zürich", "accuracy_m": -1}),
        (DEVICES[1], "usage", {"blob": b"\x00\x01\xfe\xff", "count": 2**40}),
        (DEVICES[2], "telemetry.environment", {}),
    ]
    return [
        Observation(device=device, category=category, ts=base + i * 0.125, fields=fields)
        for i, (device, category, fields) in enumerate(rows)
    ]


def _record(obs: Observation, row: Any, epoch: int, seq: int) -> dict[str, Any]:
    return {
        "topic": row.topic,
        "envelope": row.payload.hex(),
        "bytes_fields": sorted(k for k, v in obs.fields.items() if isinstance(v, bytes)),
        "expect": {
            "device": obs.device,
            "category": obs.category,
            "epoch": epoch,
            "seq": seq,
            "ts": obs.ts,
            "fields": {k: v.hex() if isinstance(v, bytes) else v for k, v in obs.fields.items()},
        },
    }


def build_estimated(prev: bytes) -> dict[str, Any]:
    """Return the ``estimated`` section: epoch 3 after the announcement hashed in ``prev``."""
    secret = _seed("epoch secret 3")
    sealer = Sealer(
        hub_id=HUB_ID,
        topic_root=TOPIC_ROOT,
        signing_key=Ed25519PrivateKey.from_private_bytes(_seed("hub")),
        recipient=X25519PrivateKey.from_private_bytes(_seed("recipient")).public_key(),
        alg=1,
        max_age_s=MAX_AGE_S,
        last_epoch=2,
        prev_hash=prev,
        clock=fixed_clock(ESTIMATED_START),
    )
    announcement = sealer.rotate(REASON_START, secret=secret, estimated=True).payload
    batch = [
        Observation(
            DEVICES[0], "telemetry.environment", ESTIMATED_START - 2.0, {"temperature": 19.0}
        ),
        Observation(DEVICES[1], "health", ESTIMATED_START - 1.0, {"steps": 12}),
    ]
    rows = sealer.seal_batch(batch, lambda _category: 86400.0)
    return {
        "announcement": announcement.hex(),
        "epoch": {"epoch": sealer.epoch, "alg": 1, "secret": secret.hex()},
        "records": [
            _record(obs, row, sealer.epoch, seq)
            for seq, (obs, row) in enumerate(zip(batch, rows, strict=True))
        ],
    }


def build() -> dict[str, Any]:
    """Return the vector document."""
    hub_key = Ed25519PrivateKey.from_private_bytes(_seed("hub"))
    recipient = X25519PrivateKey.from_private_bytes(_seed("recipient"))
    announcements: list[str] = []
    epochs: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    prev = b""
    for index, alg in enumerate((1, 24)):
        secret = _seed(f"epoch secret {index + 1}")
        sealer = Sealer(
            hub_id=HUB_ID,
            topic_root=TOPIC_ROOT,
            signing_key=hub_key,
            recipient=recipient.public_key(),
            alg=alg,
            max_age_s=MAX_AGE_S,
            last_epoch=index,
            prev_hash=prev,
            clock=fixed_clock(EPOCH_START[index]),
        )
        announcement = sealer.rotate(REASON_START, secret=secret).payload
        prev = announcement_hash(announcement)
        announcements.append(announcement.hex())
        epochs.append({"epoch": sealer.epoch, "alg": alg, "secret": secret.hex()})
        batch = observations(index)
        rows = sealer.seal_batch(batch, lambda _category: 86400.0)
        for seq, (obs, row) in enumerate(zip(batch, rows, strict=True)):
            records.append(_record(obs, row, sealer.epoch, seq))
    return {
        "hub_id": HUB_ID,
        "hub_public_key": hub_key.public_key().public_bytes_raw().hex(),
        "hub_private_key": hub_key.private_bytes_raw().hex(),
        "recipient_private_key": recipient.private_bytes_raw().hex(),
        "recipient_public_key": recipient.public_key().public_bytes_raw().hex(),
        "max_age_s": MAX_AGE_S,
        "announcements": announcements,
        "epochs": epochs,
        "records": records,
        "estimated": build_estimated(prev),
    }


def main(argv: list[str]) -> int:
    """Write the vectors to argv[0] (default: envelope-v1.json beside this script); with
    ``--estimated-only``, print the ``estimated`` section for the checked-in file's epoch 2."""
    if argv[:1] == ["--estimated-only"]:
        checked_in = json.loads(Path(__file__).with_name("envelope-v1.json").read_text())
        prev = announcement_hash(bytes.fromhex(checked_in["announcements"][-1]))
        print(json.dumps(build_estimated(prev), indent=2, ensure_ascii=False))
        return 0
    out = Path(argv[0]) if argv else Path(__file__).with_name("envelope-v1.json")
    out.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
