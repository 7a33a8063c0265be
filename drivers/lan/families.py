"""TXT parsers of the families that only announce themselves (no telemetry driver yet).

Each is pure: (instance name, decoded TXT) -> Listing, or DeviceError(bad_txt|
missing_property). Sources: the families' public docs and source code, cited per parser.
"""

from __future__ import annotations

import re
from typing import Final

from drivers.lan.listing import Listing, Txt, display_name, hex_id, mac, number, required, token
from gateway.errors import DeviceError

_VP: Final = re.compile(r"^([0-9]{1,5})(?:\+([0-9]{1,5}))?$")
_MATTER_OPERATIONAL: Final = re.compile(r"^([0-9A-Fa-f]{16})-([0-9A-Fa-f]{16})$")


def parse_googlecast(instance: str, txt: Txt) -> Listing:
    """Google Cast ``_googlecast._tcp`` (pychromecast discovery; Cast devices publish ``id``
    (32 hex digits, a UUID without dashes), ``md`` model, ``fn`` friendly name, ``ve`` version).
    """
    device_id = hex_id(required(txt, "id").replace("-", ""), (32,), "TXT id")
    return Listing(
        family="googlecast",
        stable_id=device_id,
        model=token(txt, "md"),
        firmware=token(txt, "ve"),
        name=display_name(txt.get("fn")) or display_name(instance),
    )


def parse_esphome(instance: str, txt: Txt) -> Listing:
    """ESPHome ``_esphomelib._tcp`` (esphome/components/mdns/mdns_component.cpp: ``mac``,
    ``version``, ``platform``, ``board``, ``friendly_name``, ``project_name/version``).
    """
    address = mac(required(txt, "mac"))
    details = [
        (key, value)
        for key in ("platform", "board", "network")
        if (value := token(txt, key)) is not None
    ]
    project = token(txt, "project_name")
    return Listing(
        family="esphome",
        stable_id=address.replace(":", "").lower(),
        model=project or token(txt, "board") or "ESPHome",
        firmware=token(txt, "project_version") if project else token(txt, "version"),
        name=display_name(txt.get("friendly_name")) or display_name(instance),
        mac=address,
        details=tuple(details),
    )


def parse_matter_commissionable(instance: str, txt: Txt) -> Listing:
    """Matter ``_matterc._udp`` (Matter Core spec 1.0 s4.3.1.3: ``VP`` "vendor+product",
    ``DT`` device type, ``DN`` device name, ``D`` discriminator, ``CM`` commissioning mode);
    the instance name is a random 64-bit hex id for the commissioning window.
    """
    instance_id = hex_id(instance, (16,), "the Matter instance name")
    details: list[tuple[str, str]] = []
    vendor_product = txt.get("vp")
    if vendor_product:
        match = _VP.match(vendor_product)
        if match is None or int(match[1]) > 0xFFFF or int(match[2] or 0) > 0xFFFF:
            raise DeviceError("bad_txt", "TXT VP is not vendor+product ids")
        details.append(("vendor_id", match[1]))
        if match[2] is not None:
            details.append(("product_id", match[2]))
    device_type = number(txt, "dt", 2**32 - 1)
    if device_type is not None:
        details.append(("device_type", str(device_type)))
    mode = number(txt, "cm", 3)
    if mode is not None:
        details.append(("commissioning_mode", str(mode)))
    return Listing(
        family="matter",
        stable_id=instance_id,
        model="Matter device",
        name=display_name(txt.get("dn")),
        details=tuple(details),
    )


def parse_matter_operational(instance: str, txt: Txt) -> Listing:
    """Matter ``_matter._tcp`` (Matter Core spec 1.0 s4.3.2: instance name is
    ``<compressed fabric id>-<node id>``, 16 hex digits each; TXT holds only timing keys).
    """
    match = _MATTER_OPERATIONAL.match(instance)
    if match is None:
        raise DeviceError("bad_txt", "the Matter instance name is not <fabric>-<node>")
    number(txt, "sii", 3_600_000)  # session idle interval, ms: checked, not kept
    return Listing(family="matter", stable_id=instance.lower(), model="Matter node")


def parse_hue(instance: str, txt: Txt) -> Listing:
    """Philips Hue bridge ``_hue._tcp`` (Hue developer docs "Bridge discovery": ``bridgeid``
    16 hex digits, ``modelid`` e.g. BSB002).
    """
    bridge = hex_id(required(txt, "bridgeid"), (16,), "TXT bridgeid")
    return Listing(
        family="hue",
        stable_id=bridge,
        model=token(txt, "modelid", needed=True),
        name=display_name(instance),
    )
