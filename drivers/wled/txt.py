"""WLED announcements: ``_wled._tcp`` with a ``mac`` TXT key (WLED wled00/wled.cpp, MDNS
.addService("wled", "tcp", 80) and .addServiceTxt("wled", "tcp", "mac", <12 hex digits>));
the instance name is the device's mDNS name (``wled-<last 6 MAC digits>`` by default).
"""

from __future__ import annotations

from typing import Final

from drivers.lan.listing import Listing, Txt, display_name, mac, required

SERVICE_TYPE: Final = "_wled._tcp.local."
FAMILY: Final = "wled"


def parse(instance: str, txt: Txt) -> Listing:
    """Parse a ``_wled._tcp`` TXT record; raise DeviceError(bad_txt|missing_property)."""
    address = mac(required(txt, "mac"))
    return Listing(
        family=FAMILY,
        stable_id=address.replace(":", "").lower(),
        model="WLED",
        name=display_name(instance),
        mac=address,
    )
