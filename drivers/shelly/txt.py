"""Shelly Gen2+ DNS-SD announcements: the ``_shelly._tcp`` instance name and TXT record.

Shelly Gen2 API docs, "mDNS": Gen2+ devices advertise ``_shelly._tcp`` (and ``_http._tcp``)
with ``gen=2`` (or 3, 4) in the TXT record, plus ``app`` (the firmware application, e.g.
``Plus1PM``) and ``ver`` (the firmware version). The instance name is the device id, e.g.
``shellyplus1pm-a8032ab12345``; an ``id`` TXT key, when present, takes precedence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from drivers.base import Announcement
from drivers.lan.listing import decode_txt
from gateway.errors import DeviceError

SERVICE_TYPE: Final = "_shelly._tcp.local."
MIN_GENERATION: Final = 2  # Gen1 devices do not advertise _shelly._tcp
MAX_GENERATION: Final = 99
DEVICE_ID: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
APP: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VERSION: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


def parse_announcement(instance: str, properties: Mapping[bytes, bytes | None]) -> Announcement:
    """Parse a ``_shelly._tcp`` instance name and TXT record into an Announcement.

    Raise DeviceError(missing_property) when ``gen``, ``app`` or ``ver`` (or any device id) is
    absent, DeviceError(bad_txt) when one is malformed.
    """
    txt = decode_txt(properties)
    generation = _generation(_required(txt, "gen"))
    app = _required(txt, "app")
    if not APP.match(app):
        raise DeviceError("bad_txt", "TXT app is not an application name")
    version = _required(txt, "ver")
    if not VERSION.match(version):
        raise DeviceError("bad_txt", "TXT ver is not a firmware version")
    device_id = txt.get("id") if "id" in txt else instance
    if device_id is None or not device_id:
        raise DeviceError("bad_txt", "TXT id has no value")
    device_id = device_id.lower()
    if not DEVICE_ID.match(device_id):
        raise DeviceError(
            "missing_property" if "id" not in txt else "bad_txt",
            "no Shelly device id in the TXT record or the instance name",
        )
    return Announcement(stable_id=device_id, model=app, firmware=version, generation=generation)


def _required(txt: Mapping[str, str | None], key: str) -> str:
    if key not in txt:
        raise DeviceError("missing_property", f"TXT key {key!r} is missing")
    value = txt[key]
    if not value:
        raise DeviceError("bad_txt", f"TXT key {key!r} has no value")
    return value


def _generation(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 2:
        raise DeviceError("bad_txt", "TXT gen is not a generation number")
    generation = int(value)
    if not MIN_GENERATION <= generation <= MAX_GENERATION:
        raise DeviceError("bad_txt", f"TXT gen must be at least {MIN_GENERATION} (Gen2+ API)")
    return generation
