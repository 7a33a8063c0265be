"""HomeKit Accessory Protocol announcements: the ``_hap._tcp`` (IP) and ``_hap._udp`` (Thread)
TXT record, as HAP specification R2 s6.4 (table 6-7) defines it and HAP-python publishes it.

Keys: ``id`` the accessory's pairing identifier (``XX:XX:XX:XX:XX:XX``, new after a factory
reset), ``md`` model, ``c#`` configuration number, ``s#`` state number, ``sf`` status flags
(bit 0: not paired), ``ci`` category identifier (HAP table 12-3), ``ff`` feature flags,
``pv`` protocol version.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from drivers.lan.listing import Listing, Txt, display_name, mac, number, required, token
from gateway.errors import DeviceError

SERVICE_TYPES: Final = ("_hap._tcp.local.", "_hap._udp.local.")
FAMILY: Final = "homekit"
NOT_PAIRED: Final = 0x01  # HAP R2 table 6-8, status flag bit 0

# HAP R2 table 12-3 (accessory categories), the ones an ordinary home has.
CATEGORIES: Final[Mapping[int, str]] = MappingProxyType(
    {
        1: "other", 2: "bridge", 3: "fan", 4: "garage_door_opener", 5: "lightbulb",
        6: "door_lock", 7: "outlet", 8: "switch", 9: "thermostat", 10: "sensor",
        11: "security_system", 12: "door", 13: "window", 14: "window_covering",
        15: "programmable_switch", 16: "range_extender", 17: "ip_camera", 18: "video_doorbell",
        19: "air_purifier", 20: "heater", 21: "air_conditioner", 22: "humidifier",
        23: "dehumidifier", 28: "sprinkler", 29: "faucet", 30: "shower_head", 31: "television",
        32: "target_controller", 33: "wifi_router", 34: "audio_receiver", 35: "tv_set_top_box",
        36: "tv_streaming_stick",
    }
)  # fmt: skip


def parse(instance: str, txt: Txt) -> Listing:
    """Parse a HAP TXT record; raise DeviceError(bad_txt|missing_property)."""
    pairing_id = mac(required(txt, "id")).lower()
    model = token(txt, "md", needed=True)
    category = number(txt, "ci", 0xFFFF)
    config = number(txt, "c#", 2**32 - 1)
    if config is None:
        raise DeviceError("missing_property", "TXT key 'c#' is missing")
    flags = number(txt, "sf", 0xFF)
    details = [("config_number", str(config))]
    if category is not None:
        details.append(("category", CATEGORIES.get(category, f"category_{category}")))
    if flags is not None:
        details.append(("accepts_pairing", "yes" if flags & NOT_PAIRED else "no"))
    protocol = token(txt, "pv")
    if protocol is not None:
        details.append(("protocol_version", protocol))
    return Listing(
        family=FAMILY,
        stable_id=pairing_id,
        model=model,
        name=display_name(instance),
        details=tuple(details),
    )
