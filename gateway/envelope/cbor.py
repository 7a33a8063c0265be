"""A strict decoder for the CBOR subset envelope v1 uses, and the encoder's head helpers.

Records and announcements arrive from the network unauthenticated, so their outer layers are
parsed here rather than with ``cbor2.loads``, whose semantic decoders would turn attacker bytes
into datetimes, regular expressions, sets or self-referencing containers. This decoder knows
only what RFC 8949 calls the basic data model: unsigned and negative integers, byte and text
strings, arrays, maps with integer or string keys, tags (returned as ``Tagged``), false, true,
null and floats. Indefinite lengths, undefined, other simple values, duplicate map keys,
nesting deeper than ``max_depth`` and trailing bytes are refused with ``MalformedError``; no
other exception escapes for any input. Encodings need not be minimal: the authenticated bytes
are verified as received, never re-encoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from gateway.envelope.errors import MalformedError

_HALF: Final = struct.Struct(">e")
_SINGLE: Final = struct.Struct(">f")
_DOUBLE: Final = struct.Struct(">d")


@dataclass(frozen=True, slots=True)
class Tagged:
    """A tagged data item (RFC 8949 section 3.4) left uninterpreted."""

    tag: int
    value: Item


Key: TypeAlias = int | str | bytes
Item: TypeAlias = (
    int | bytes | str | float | bool | list["Item"] | dict[Key, "Item"] | Tagged | None
)


def decode(data: bytes, *, max_depth: int = 4) -> Item:
    """Return the single data item ``data`` holds; raise MalformedError for anything else."""
    item, end = _item(data, 0, max_depth)
    if end != len(data):
        raise MalformedError(f"{len(data) - end} trailing bytes after the CBOR item")
    return item


def _argument(data: bytes, pos: int, info: int) -> tuple[int, int]:
    """Return the argument of the head whose additional information is ``info``, and the end."""
    if info < 24:
        return info, pos
    if info > 27:
        raise MalformedError("indefinite length or reserved additional information")
    size = 1 << (info - 24)
    end = pos + size
    if end > len(data):
        raise MalformedError("truncated CBOR head")
    return int.from_bytes(data[pos:end], "big"), end


def _item(data: bytes, pos: int, depth: int) -> tuple[Item, int]:
    if pos >= len(data):
        raise MalformedError("truncated CBOR item")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if major == 7:
        return _simple(data, pos, info)
    value, pos = _argument(data, pos, info)
    if major == 0:
        return value, pos
    if major == 1:
        return -1 - value, pos
    if major in (2, 3):
        end = pos + value
        if end > len(data):
            raise MalformedError("string runs past the end of the input")
        if major == 2:
            return data[pos:end], end
        try:
            return data[pos:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise MalformedError("text string is not valid UTF-8") from None
    if depth <= 0:
        raise MalformedError("CBOR nesting is deeper than the envelope format allows")
    if major == 4:
        return _array(data, pos, value, depth - 1)
    if major == 5:
        return _map(data, pos, value, depth - 1)
    inner, pos = _item(data, pos, depth - 1)
    return Tagged(value, inner), pos


def _array(data: bytes, pos: int, count: int, depth: int) -> tuple[Item, int]:
    # Every item takes at least one byte: a count beyond the remaining input is a lie.
    if count > len(data) - pos:
        raise MalformedError("array is longer than the input")
    items: list[Item] = []
    for _ in range(count):
        item, pos = _item(data, pos, depth)
        items.append(item)
    return items, pos


def _map(data: bytes, pos: int, count: int, depth: int) -> tuple[Item, int]:
    if 2 * count > len(data) - pos:
        raise MalformedError("map is longer than the input")
    result: dict[Key, Item] = {}
    for _ in range(count):
        key, pos = _item(data, pos, depth)
        if not isinstance(key, int | str | bytes) or isinstance(key, bool):
            raise MalformedError("map key is not an integer or a string")
        if key in result:
            raise MalformedError("duplicate map key")
        result[key], pos = _item(data, pos, depth)
    return result, pos


def _simple(data: bytes, pos: int, info: int) -> tuple[Item, int]:
    if info == 20:
        return False, pos
    if info == 21:
        return True, pos
    if info == 22:
        return None, pos
    if info in (25, 26, 27):
        codec = {25: _HALF, 26: _SINGLE, 27: _DOUBLE}[info]
        end = pos + codec.size
        if end > len(data):
            raise MalformedError("truncated float")
        return float(codec.unpack_from(data, pos)[0]), end
    raise MalformedError("unsupported CBOR simple value")


def head(major: int, value: int) -> bytes:
    """Return the shortest CBOR head of major type ``major`` with argument ``value`` (>= 0)."""
    top = major << 5
    if value < 24:
        return bytes((top | value,))
    if value < 0x100:
        return bytes((top | 24, value))
    if value < 0x10000:
        return bytes((top | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((top | 26,)) + value.to_bytes(4, "big")
    return bytes((top | 27,)) + value.to_bytes(8, "big")


def bstr(value: bytes) -> bytes:
    """Return ``value`` encoded as a CBOR byte string."""
    return head(2, len(value)) + value


def tstr(value: str) -> bytes:
    """Return ``value`` encoded as a CBOR text string."""
    raw = value.encode("utf-8")
    return head(3, len(raw)) + raw


def uint(value: int) -> bytes:
    """Return the non-negative integer ``value`` encoded as a CBOR unsigned integer."""
    return head(0, value)
