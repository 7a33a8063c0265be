"""The consumer's per-record parsing, for its hot path: the same checks, less work per record.

- ``split_record`` reads a record of the one canonical shape the sealer writes,
  ``16([bstr protected, {6: bstr partial_iv}, bstr ciphertext])`` with minimal CBOR heads, by
  hand; anything else goes to ``parse_record``, which parses or refuses it as before. The
  protected header and the partial IV are checked by the same functions, so the result is
  ``parse_record``'s for every input (property-tested in tests/fleet).
- ``data_topic_aad`` memoises what a record's topic gives: the parsed topic and the external
  AAD without its seq (a hub's devices and categories repeat the same few topics).
- ``record_aad`` builds the AEAD AAD (RFC 9052 section 5.3) from the memoised prefixes.
"""

from __future__ import annotations

import functools
from typing import Final

from gateway.envelope.cbor import bstr, uint
from gateway.envelope.format import (
    MAX_ENVELOPE_SIZE,
    TAG_LENGTH,
    ParsedRecord,
    enc_structure_prefix,
    external_aad_prefix,
    parse_protected,
    parse_record,
    seq_of,
)
from gateway.envelope.topics import DataTopic, parse_data_topic

_TAG16_ARRAY3: Final = b"\xd0\x83"
_UNPROTECTED: Final = b"\xa1\x06"  # {6: ...}
_TOPICS_CACHED: Final = 65536


def split_record(payload: bytes) -> ParsedRecord:
    """Return ``parse_record(payload)``, reading the sealer's canonical shape without decoding."""
    if len(payload) > MAX_ENVELOPE_SIZE or payload[:2] != _TAG16_ARRAY3:
        return parse_record(payload)
    protected, pos = _bstr(payload, 2)
    if protected is None or payload[pos : pos + 2] != _UNPROTECTED:
        return parse_record(payload)
    partial_iv, pos = _bstr(payload, pos + 2)
    if partial_iv is None:
        return parse_record(payload)
    ciphertext, pos = _bstr(payload, pos)
    if ciphertext is None or pos != len(payload) or len(ciphertext) < TAG_LENGTH:
        return parse_record(payload)
    return ParsedRecord(
        header=parse_protected(protected),
        protected=protected,
        seq=seq_of(partial_iv),
        ciphertext=ciphertext,
    )


@functools.lru_cache(maxsize=_TOPICS_CACHED)
def data_topic_aad(topic: str) -> tuple[DataTopic, bytes]:
    """Return the parsed data topic and its external AAD prefix; raise MalformedError."""
    where = parse_data_topic(topic)
    return where, external_aad_prefix(where.hub_id, topic)


def record_aad(protected: bytes, external_prefix: bytes, seq: int) -> bytes:
    """Return CBOR ["Encrypt0", bstr protected, bstr (external prefix + seq)]."""
    return _structure_prefix(protected) + bstr(external_prefix + uint(seq))


@functools.lru_cache(maxsize=4096)
def _structure_prefix(protected: bytes) -> bytes:
    return enc_structure_prefix(protected)


def _bstr(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """Return the byte string with a minimal head at ``pos`` and its end, or (None, pos)."""
    if pos >= len(data):
        return None, pos
    initial = data[pos]
    if 0x40 <= initial <= 0x57:
        start, size = pos + 1, initial - 0x40
    elif initial == 0x58 and pos + 1 < len(data) and data[pos + 1] >= 24:
        start, size = pos + 2, data[pos + 1]
    elif initial == 0x59 and pos + 2 < len(data):
        start, size = pos + 3, (data[pos + 1] << 8) | data[pos + 2]
        if size < 256:
            return None, pos
    else:
        return None, pos
    end = start + size
    if end > len(data):
        return None, pos
    return data[start:end], end
