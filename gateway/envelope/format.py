"""Envelope v1 byte layout (docs/envelope.md): pure encoders and strict parsers.

Announcement of an epoch::

    core       = canonical CBOR {"v": "consentgate/1", "gw": hub_id, "ep": epoch, "rkid": bytes(8),
                                 "alg": 1 | 24, "nb": unix, "na": unix, "max": 65536, "prev": bytes}
    wrapped    = HPKE(X25519, HKDF-SHA256, AES-128-GCM).encrypt(secret, recipient, info=core)
    body       = CBOR [bstr core, bstr wrapped]      (core travels as a byte string so its exact
                                                      bytes are available as HPKE info)
    announcement = CBOR [bstr body, bstr Ed25519(hub_key, b"consentgate-epoch" + body)]
    kid        = sha256(body)[:8];  prev = sha256(previous announcement) or b""

``nb`` is the epoch's start and ``na`` = nb + the configured maximum epoch age: the time after
which the hub seals nothing more under the epoch. ``rkid`` = sha256(raw recipient public
key)[:8]. A core may carry one more key, ``"est": true``, when the hub started the epoch before
its wall clock was trusted: ``nb``/``na`` are then estimates (docs/envelope.md).

Record (COSE_Encrypt0, RFC 9052 section 5.2)::

    16([bstr protected, {6: partial_iv}, bstr ciphertext])
    protected    = canonical CBOR {1: alg, 4: kid, -65537: device pseudonym (8 raw bytes),
                                   -65538: category}
    partial_iv   = seq big-endian in the fewest bytes (seq 0 -> b"\\x00")
    external_aad = CBOR ["consentgate/1", hub_id, mqtt_topic, seq]
    AAD          = CBOR ["Encrypt0", bstr protected, bstr external_aad]
    plaintext    = canonical CBOR {"ts": float unix seconds, "fields": {name: value}}

``seq`` counts from 0 in each epoch and stays below ``max`` (at most 65536). Canonical means
``cbor2.dumps(..., canonical=True)``; the AAD structures are built from CBOR heads here and are
byte-identical to what cbor2 produces for them (the tests check this).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeGuard

import cbor2

from gateway.envelope.cbor import Item, Tagged, bstr, decode, head, tstr, uint
from gateway.envelope.errors import MalformedError, SealError
from gateway.envelope.keyschedule import KEY_LENGTHS
from gateway.envelope.topics import SEGMENT, WORD

VERSION: Final = "consentgate/1"
SIGN_CONTEXT: Final = b"consentgate-epoch"
MAX_RECORDS: Final = 65536
MAX_ENVELOPE_SIZE: Final = 64 * 1024
# Room left for the COSE structure around a plaintext: tag, array, protected header (at most
# 36 bytes plus a 64-byte category), unprotected map, byte-string heads and the 16-byte tag.
MAX_PLAINTEXT_SIZE: Final = MAX_ENVELOPE_SIZE - 256
KID_LENGTH: Final = 8
DEVICE_LENGTH: Final = 8
COSE_ENCRYPT0: Final = 16
HDR_ALG: Final = 1
HDR_KID: Final = 4
HDR_PARTIAL_IV: Final = 6
HDR_DEVICE: Final = -65537
HDR_CATEGORY: Final = -65538
TAG_LENGTH: Final = 16

# The field values a record carries (the same scalars as gateway.model.Value, which the
# consumer library does not import).
Value = bool | int | float | str | bytes | None

_SCALARS: Final = frozenset({bool, int, float, str, bytes, type(None)})
_CORE_KEYS: Final = frozenset({"v", "gw", "ep", "rkid", "alg", "nb", "na", "max", "prev"})
# "est": true marks nb/na as estimates (the hub's clock was not trusted); absent otherwise.
CORE_ESTIMATED: Final = "est"
_PROTECTED_KEYS: Final = frozenset({HDR_ALG, HDR_KID, HDR_DEVICE, HDR_CATEGORY})
_INT64: Final = 1 << 63
_ENC_STRUCTURE_CONTEXT: Final = head(4, 3) + tstr("Encrypt0")


@dataclass(frozen=True, slots=True)
class EpochCore:
    """The signed, HPKE-bound description of one epoch (the announcement's ``core``)."""

    hub_id: str
    epoch: int
    rkid: bytes
    alg: int
    not_before: int
    not_after: int
    prev: bytes
    max_records: int = MAX_RECORDS
    estimated: bool = False  # nb/na estimated: the hub's clock was not trusted

    def encode(self) -> bytes:
        """Return the canonical CBOR encoding of this core (``est`` only when estimated)."""
        core: dict[str, object] = {
            "v": VERSION,
            "gw": self.hub_id,
            "ep": self.epoch,
            "rkid": self.rkid,
            "alg": self.alg,
            "nb": self.not_before,
            "na": self.not_after,
            "max": self.max_records,
            "prev": self.prev,
        }
        if self.estimated:
            core[CORE_ESTIMATED] = True
        return cbor2.dumps(core, canonical=True)


@dataclass(frozen=True, slots=True)
class Announcement:
    """A parsed (not yet verified) epoch announcement."""

    core: EpochCore
    core_bytes: bytes
    wrapped: bytes
    body: bytes
    signature: bytes
    kid: bytes


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """The protected header of a record."""

    alg: int
    kid: bytes
    device: bytes
    category: str


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    """A parsed (not yet opened) record: header, its exact bytes, seq and ciphertext."""

    header: RecordHeader
    protected: bytes
    seq: int
    ciphertext: bytes


def epoch_window(now: float, max_age_s: float) -> tuple[int, int]:
    """Return (nb, na) of an epoch starting at ``now``: whole seconds, na = nb + max age."""
    not_before = math.floor(now)
    return not_before, not_before + math.ceil(max_age_s)


def kid_of(body: bytes) -> bytes:
    """Return the key id of an epoch: the first 8 bytes of sha256(body)."""
    return hashlib.sha256(body).digest()[:KID_LENGTH]


def announcement_hash(announcement: bytes) -> bytes:
    """Return sha256(announcement), the ``prev`` value of the next epoch's core."""
    return hashlib.sha256(announcement).digest()


def encode_body(core: bytes, wrapped: bytes) -> bytes:
    """Return the announcement body CBOR [bstr core, bstr wrapped]."""
    return cbor2.dumps([core, wrapped], canonical=True)


def encode_announcement(body: bytes, signature: bytes) -> bytes:
    """Return the announcement CBOR [bstr body, bstr signature]."""
    return cbor2.dumps([body, signature], canonical=True)


def signed_message(body: bytes) -> bytes:
    """Return the bytes the hub signs for ``body``: the domain-separation context, then body."""
    return SIGN_CONTEXT + body


def parse_announcement(payload: bytes) -> Announcement:
    """Parse an announcement without verifying it; raise MalformedError on any deviation."""
    match _decode(payload, "announcement"):
        case [bytes() as body, bytes() as signature]:
            pass
        case _:
            raise MalformedError("an announcement is CBOR [bstr body, bstr signature]")
    if len(signature) != 64:
        raise MalformedError("the announcement signature is not 64 bytes (Ed25519)")
    match _decode(body, "announcement body"):
        case [bytes() as core_bytes, bytes() as wrapped]:
            pass
        case _:
            raise MalformedError("an announcement body is CBOR [bstr core, bstr wrapped]")
    return Announcement(
        core=parse_core(core_bytes),
        core_bytes=core_bytes,
        wrapped=wrapped,
        body=body,
        signature=signature,
        kid=kid_of(body),
    )


def parse_core(data: bytes) -> EpochCore:
    """Parse and validate an announcement core; raise MalformedError on any deviation."""
    core = _decode(data, "announcement core")
    if not isinstance(core, dict) or set(core) - {CORE_ESTIMATED} != _CORE_KEYS:
        raise MalformedError("the announcement core does not have exactly the v1 keys")
    estimated = CORE_ESTIMATED in core
    if estimated and core[CORE_ESTIMATED] is not True:  # false is written by leaving it out
        raise MalformedError('the announcement\'s "est" is not true')
    if core["v"] != VERSION:
        raise MalformedError(f"unsupported envelope version {core['v']!r}; expected {VERSION!r}")
    hub_id, epoch, rkid, alg = core["gw"], core["ep"], core["rkid"], core["alg"]
    not_before, not_after, max_records, prev = core["nb"], core["na"], core["max"], core["prev"]
    if not isinstance(hub_id, str) or not SEGMENT.fullmatch(hub_id):
        raise MalformedError("the announcement's hub id is not 1-64 of [A-Za-z0-9_-]")
    if not _is_int(epoch) or not 0 <= epoch < _INT64:
        raise MalformedError("the announcement's epoch is not a non-negative 64-bit integer")
    if not _is_bytes(rkid) or len(rkid) != KID_LENGTH:
        raise MalformedError("the announcement's recipient key id is not 8 bytes")
    if not _is_int(alg) or alg not in KEY_LENGTHS:
        raise MalformedError("the announcement's alg is not 1 (A128GCM) or 24 (ChaCha20/Poly1305)")
    if not (_is_int(not_before) and _is_int(not_after) and 0 <= not_before <= not_after < _INT64):
        raise MalformedError("the announcement's nb/na are not unix times with nb <= na")
    if not _is_int(max_records) or not 1 <= max_records <= MAX_RECORDS:
        raise MalformedError(f"the announcement's max is not in 1..{MAX_RECORDS}")
    if not _is_bytes(prev) or len(prev) not in (0, 32):
        raise MalformedError("the announcement's prev is not empty or a sha256 digest")
    return EpochCore(hub_id, epoch, rkid, alg, not_before, not_after, prev, max_records, estimated)


def encode_protected(alg: int, kid: bytes, device: bytes, category: str) -> bytes:
    """Return the canonical CBOR protected header of a record."""
    return cbor2.dumps(
        {HDR_ALG: alg, HDR_KID: kid, HDR_DEVICE: device, HDR_CATEGORY: category}, canonical=True
    )


def record_prefix(protected: bytes) -> bytes:
    """Return the bytes every record with this protected header starts with (up to the IV)."""
    return head(6, COSE_ENCRYPT0) + head(4, 3) + bstr(protected) + head(5, 1) + uint(HDR_PARTIAL_IV)


def encode_record(protected: bytes, partial_iv: bytes, ciphertext: bytes) -> bytes:
    """Return the COSE_Encrypt0 record 16([bstr protected, {6: bstr partial_iv}, bstr ct])."""
    return record_prefix(protected) + bstr(partial_iv) + bstr(ciphertext)


def external_aad_prefix(hub_id: str, topic: str) -> bytes:
    """Return the external AAD of a record on ``topic`` without its trailing seq."""
    return head(4, 4) + tstr(VERSION) + tstr(hub_id) + tstr(topic)


def external_aad(hub_id: str, topic: str, seq: int) -> bytes:
    """Return CBOR ["consentgate/1", hub_id, topic, seq], the record's external AAD."""
    return external_aad_prefix(hub_id, topic) + uint(seq)


def enc_structure_prefix(protected: bytes) -> bytes:
    """Return the AEAD AAD of a record up to (not including) its external AAD byte string."""
    return _ENC_STRUCTURE_CONTEXT + bstr(protected)


def enc_structure(protected: bytes, external: bytes) -> bytes:
    """Return CBOR ["Encrypt0", bstr protected, bstr external_aad], the AEAD AAD (RFC 9052 5.3)."""
    return enc_structure_prefix(protected) + bstr(external)


def parse_record(payload: bytes) -> ParsedRecord:
    """Parse a record without opening it; raise MalformedError on any deviation."""
    # COSE_Encrypt0 is CBOR tag 16 (RFC 9052 section 2).
    match _decode(payload, "record"):
        case Tagged(
            tag=16, value=[bytes() as protected, dict() as unprotected, bytes() as ciphertext]
        ):
            pass
        case _:
            raise MalformedError(
                "a record is 16([bstr protected, {6: partial_iv}, bstr ciphertext])"
            )
    if len(ciphertext) < TAG_LENGTH:
        raise MalformedError("a record's ciphertext is shorter than the AEAD tag")
    if set(unprotected) != {HDR_PARTIAL_IV}:
        raise MalformedError("a record's unprotected header is exactly {6: partial_iv}")
    return ParsedRecord(
        header=parse_protected(protected),
        protected=protected,
        seq=seq_of(unprotected[HDR_PARTIAL_IV]),
        ciphertext=ciphertext,
    )


# Memoized: a hub sends the same few headers (one per device and category and epoch) over and
# over; parsing is a pure function of the bytes, and errors are not cached.
@functools.lru_cache(maxsize=4096)
def parse_protected(data: bytes) -> RecordHeader:
    """Parse and validate a record's protected header; raise MalformedError on any deviation."""
    header = _decode(data, "protected header")
    if not isinstance(header, dict) or set(header) != _PROTECTED_KEYS:
        raise MalformedError("the protected header does not have exactly the v1 labels")
    alg, kid = header[HDR_ALG], header[HDR_KID]
    device, category = header[HDR_DEVICE], header[HDR_CATEGORY]
    if not _is_int(alg) or alg not in KEY_LENGTHS:
        raise MalformedError("the record's alg is not 1 (A128GCM) or 24 (ChaCha20/Poly1305)")
    if not _is_bytes(kid) or len(kid) != KID_LENGTH:
        raise MalformedError("the record's kid is not 8 bytes")
    if not _is_bytes(device) or len(device) != DEVICE_LENGTH:
        raise MalformedError("the record's device pseudonym is not 8 bytes")
    if not isinstance(category, str) or not WORD.fullmatch(category):
        raise MalformedError("the record's category is not 1-64 of [A-Za-z0-9_.-]")
    return RecordHeader(alg, kid, device, category)


def seq_of(partial_iv: Item) -> int:
    """Return the seq a partial IV encodes; raise MalformedError unless it is minimal and < max."""
    if not _is_bytes(partial_iv) or not 1 <= len(partial_iv) <= 2:
        raise MalformedError("the partial IV is not 1 or 2 bytes")
    if len(partial_iv) == 2 and partial_iv[0] == 0:
        raise MalformedError("the partial IV is not in its shortest form")
    return int.from_bytes(partial_iv, "big")


_PLAINTEXT_TS: Final = head(5, 2) + tstr("ts")  # {"ts": ..., "fields": ...}: "ts" sorts first
_PLAINTEXT_FIELDS: Final = tstr("fields")
_FLOAT_SIZES: Final = {0xF9: 3, 0xFA: 5, 0xFB: 9}  # half, single, double: head byte + value


def _canonical_key(name: str) -> tuple[int, bytes]:
    # cbor2's canonical map order (RFC 7049 section 3.9): shorter encoded key first, then
    # bytewise; for text keys, the UTF-8 length then the UTF-8 bytes.
    raw = name.encode("utf-8")
    return len(raw), raw


# A device reports the same field names reading after reading: their order is computed once.
@functools.lru_cache(maxsize=4096)
def _canonical_order(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(names, key=_canonical_key))


def encode_plaintext(ts: float, fields: Mapping[str, Value]) -> bytes:
    """Return canonical CBOR {"ts": ts, "fields": fields}; raise SealError if not encodable.

    The bytes are ``cbor2.dumps(..., canonical=True)``'s (the tests compare them), made without
    its map sorting, which costs more than the rest of the encoding: the fields are put in
    canonical order here and encoded by cbor2 as one flat array ``[ts, k1, v1, k2, v2, ...]``
    (canonical floats, items byte-identical to a map's), whose head is then swapped for the two
    maps' heads.
    """
    try:
        names = _canonical_order(tuple(fields))
        if not math.isfinite(ts):
            raise SealError("a reading's time is not a finite number")
        flat: list[object] = [float(ts)]
        for name in names:
            flat += (name, fields[name])
        items = cbor2.dumps(flat, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, AttributeError) as exc:
        raise SealError(f"the reading cannot be encoded as CBOR: {exc}") from exc
    start = len(head(4, len(flat)))
    end = start + _FLOAT_SIZES[items[start]]
    return b"".join(
        (_PLAINTEXT_TS, items[start:end], _PLAINTEXT_FIELDS, head(5, len(names)), items[end:])
    )


def decode_plaintext(data: bytes) -> tuple[float, dict[str, Value]]:
    """Return (ts, fields) of an opened record; raise MalformedError unless it is v1-shaped.

    The plaintext has passed the AEAD check, so only a holder of the epoch key produced it; it
    is decoded with cbor2's fast decoder and the result must be exactly {"ts": float,
    "fields": {text: scalar}}.
    """
    try:
        item = cbor2.loads(data, max_depth=4, allow_indefinite=False, allow_duplicate_keys=False)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise MalformedError(f"the plaintext is not valid CBOR: {exc}") from None
    if not isinstance(item, dict) or set(item) != {"ts", "fields"}:
        raise MalformedError('the plaintext is not {"ts", "fields"}')
    ts, fields = item["ts"], item["fields"]
    if type(ts) is not float or not math.isfinite(ts):
        raise MalformedError("the plaintext's ts is not a finite float")
    if not isinstance(fields, dict):
        raise MalformedError("the plaintext's fields is not a map")
    for name, value in fields.items():
        if type(name) is not str or type(value) not in _SCALARS:
            raise MalformedError("a field is not a text name with a scalar value")
    return ts, fields


def _decode(data: bytes, what: str) -> Item:
    if len(data) > MAX_ENVELOPE_SIZE:
        raise MalformedError(f"the {what} is larger than {MAX_ENVELOPE_SIZE} bytes")
    return decode(data)


def _is_bytes(value: object) -> TypeGuard[bytes]:
    return isinstance(value, bytes)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
