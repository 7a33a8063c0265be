"""The device registry shared by the mDNS and BLE transports (candidates, pairing, status)."""

from gateway.devices.commands import register_commands
from gateway.devices.model import (
    BLE,
    MDNS,
    TRANSPORTS,
    Candidate,
    DeviceEvent,
    DeviceInfo,
    DeviceView,
    Pairer,
    Sighting,
)
from gateway.devices.registry import DeviceRegistry

__all__ = [
    "BLE",
    "MDNS",
    "TRANSPORTS",
    "Candidate",
    "DeviceEvent",
    "DeviceInfo",
    "DeviceRegistry",
    "DeviceView",
    "Pairer",
    "Sighting",
    "register_commands",
]
