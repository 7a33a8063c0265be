"""What the mDNS transport keeps about one DNS-SD service instance (RFC 6763 s4)."""

from __future__ import annotations

import asyncio

from drivers.base import Driver
from drivers.lan.listing import Listing
from gateway.devices.model import Sighting


class MdnsService:
    """What the transport knows about one DNS-SD service instance."""

    __slots__ = (
        "device",
        "driver",
        "last_error",
        "listing",
        "log_id",
        "name",
        "resolve",
        "sighting",
        "task",
        "type",
        "wake",
    )

    def __init__(self, service_type: str, name: str, driver: Driver, log_id: str) -> None:
        self.type = service_type
        self.name = name
        self.driver = driver
        self.log_id = log_id  # pseudonym of the instance name, until the device id is known
        self.device: str | None = None
        self.sighting: Sighting | None = None  # None while the announcement is unusable
        self.listing: Listing | None = None
        self.last_error: str | None = None
        self.resolve = True
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def instance(self) -> str:
        """Return the instance label of the service name (RFC 6763 s4.1)."""
        cut = len(self.name) - len(self.type) - 1
        return self.name[:cut] if self.name.lower().endswith("." + self.type.lower()) else self.name
