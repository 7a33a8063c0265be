"""Describe an envelope's clear structure without keys (``consentgate inspect``).

Shows what anyone on the broker can see of a record (alg, kid, device pseudonym, category,
seq, ciphertext size) or of an announcement (its core, key id and sizes). Nothing is decrypted
and no signature is verified: the output says what the bytes claim, not that they are genuine.
"""

from __future__ import annotations

from gateway.envelope.cbor import Tagged, decode
from gateway.envelope.errors import MalformedError
from gateway.envelope.format import (
    MAX_ENVELOPE_SIZE,
    TAG_LENGTH,
    parse_announcement,
    parse_record,
)

JsonValue = str | int | bool


def describe(payload: bytes) -> dict[str, JsonValue]:
    """Return the clear fields of a record or announcement (bytes as hex); MalformedError else."""
    if len(payload) > MAX_ENVELOPE_SIZE:
        raise MalformedError(f"the payload is larger than {MAX_ENVELOPE_SIZE} bytes")
    if isinstance(decode(payload), Tagged):
        record = parse_record(payload)
        header = record.header
        return {
            "kind": "record",
            "size": len(payload),
            "alg": header.alg,
            "kid": header.kid.hex(),
            "device": header.device.hex(),
            "category": header.category,
            "seq": record.seq,
            "ciphertext_size": len(record.ciphertext) - TAG_LENGTH,
        }
    announcement = parse_announcement(payload)
    core = announcement.core
    estimated: dict[str, JsonValue] = {"est": True} if core.estimated else {}
    return {
        "kind": "announcement",
        "size": len(payload),
        "hub_id": core.hub_id,
        "epoch": core.epoch,
        "kid": announcement.kid.hex(),
        "rkid": core.rkid.hex(),
        "alg": core.alg,
        "nb": core.not_before,
        "na": core.not_after,
        **estimated,  # nb/na are the hub's estimates (its clock was not trusted)
        "max": core.max_records,
        "prev": core.prev.hex(),
        "wrapped_size": len(announcement.wrapped),
        "signature": announcement.signature.hex(),
        "verified": False,
    }
