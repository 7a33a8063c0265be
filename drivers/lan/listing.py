"""What a DNS-SD announcement of a LAN device says, and the checks every TXT parser shares.

A ``Listing`` is the parsed form of one service instance (RFC 6763 s4.1) and its TXT record
(RFC 6763 s6): the stable id the device's pseudonym derives from, model, firmware, display
name, MAC where the family publishes one, and ``details``: non-identifying attributes
(category, protocol version, vendor and product ids...) shown with a candidate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.errors import DeviceError

MAX_TEXT: Final = 64
_HEX12: Final = re.compile(r"^[0-9A-Fa-f]{12}$")
_COLON_MAC: Final = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_TOKEN: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z ._+()/-]{0,63}$")

Txt = Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class Listing:
    """A parsed announcement; raw identifiers here stay between the transport and the registry."""

    family: str
    stable_id: str
    model: str | None = None
    firmware: str | None = None
    name: str | None = None
    mac: str | None = None
    details: tuple[tuple[str, str], ...] = ()


def decode_txt(properties: Mapping[bytes, bytes | None]) -> dict[str, str | None]:
    """Decode TXT key/value strings; keys are case-insensitive (RFC 6763 s6.4), so lowercased.

    A key present without ``=`` has the value None (RFC 6763 s6.4, boolean attribute); a key
    repeated in another case keeps its first value (RFC 6763 s6.4: only the first is used).
    Raise DeviceError(bad_txt) on bytes that are not UTF-8 (RFC 6763 s6.5).
    """
    txt: dict[str, str | None] = {}
    for raw_key, raw_value in properties.items():
        try:
            key = raw_key.decode("ascii").lower()
            value = None if raw_value is None else raw_value.decode("utf-8")
        except (UnicodeDecodeError, AttributeError) as exc:
            raise DeviceError("bad_txt", "a TXT key or value is not text") from exc
        txt.setdefault(key, value)
    return txt


def required(txt: Txt, key: str) -> str:
    """Return TXT ``key``; DeviceError(missing_property) if absent, (bad_txt) if empty."""
    if key not in txt:
        raise DeviceError("missing_property", f"TXT key {key!r} is missing")
    value = txt[key]
    if not value:
        raise DeviceError("bad_txt", f"TXT key {key!r} has no value")
    return value


def token(txt: Txt, key: str, *, needed: bool = False) -> str | None:
    """Return TXT ``key`` as a short printable token (model, version, board), or None.

    Raise DeviceError(bad_txt) when present but not a token, (missing_property) when ``needed``.
    """
    if needed:
        value: str | None = required(txt, key)
    else:
        value = txt.get(key)
        if not value:
            return None
    assert value is not None
    if not _TOKEN.match(value):
        raise DeviceError("bad_txt", f"TXT key {key!r} is not a short printable value")
    return value


def display_name(value: str | None) -> str | None:
    """Return ``value`` without control characters, trimmed to MAX_TEXT, or None if empty."""
    if value is None:
        return None
    cleaned = "".join(c for c in value if c.isprintable()).strip()[:MAX_TEXT]
    return cleaned or None


def number(txt: Txt, key: str, limit: int) -> int | None:
    """Return TXT ``key`` as a decimal integer in [0, limit], None if absent; else bad_txt."""
    value = txt.get(key)
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > limit:
        raise DeviceError("bad_txt", f"TXT key {key!r} is not a number up to {limit}")
    return int(value)


def mac(value: str) -> str:
    """Return a MAC given as 12 hex digits or colon-separated as ``AA:BB:CC:DD:EE:FF``."""
    if _HEX12.match(value):
        digits = value.upper()
    elif _COLON_MAC.match(value):
        digits = value.replace(":", "").upper()
    else:
        raise DeviceError("bad_txt", "a TXT MAC address is not 12 hex digits")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def hex_id(value: str, lengths: tuple[int, ...], what: str) -> str:
    """Return a hex identifier of one of ``lengths`` digits, lowercased; else bad_txt."""
    if len(value) not in lengths or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise DeviceError("bad_txt", f"{what} is not a hex identifier")
    return value.lower()
