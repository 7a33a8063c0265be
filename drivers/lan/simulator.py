"""Simulated LAN announcements for tests, the demo and benchmarks: any DNS-SD service type
with a TXT record, registered on its own AsyncZeroconf bound to the given interfaces (tests
and the demo: ``["127.0.0.1"]``, never the default).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf


class Announcer:
    """Announces one service instance (``instance`` of ``service_type``) while entered."""

    def __init__(
        self,
        service_type: str,
        instance: str,
        txt: Mapping[str, str | None],
        *,
        port: int = 80,
        host: str = "127.0.0.1",
        interfaces: Sequence[str] = ("127.0.0.1",),
        zeroconf: AsyncZeroconf | None = None,
    ) -> None:
        self.service_type = service_type
        self.instance = instance
        self.txt = dict(txt)
        self.port = port
        self.host = host
        self.interfaces = list(interfaces)
        self._shared = zeroconf
        self._azc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    @property
    def service_name(self) -> str:
        """Return the full service instance name (RFC 6763 s4.1)."""
        return f"{self.instance}.{self.service_type}"

    async def __aenter__(self) -> Self:
        self._azc = self._shared or AsyncZeroconf(
            interfaces=self.interfaces, ip_version=IPVersion.V4Only
        )
        label = self.instance.lower().replace(" ", "-")[:40]
        self._info = AsyncServiceInfo(
            self.service_type,
            self.service_name,
            addresses=[socket.inet_aton(self.host)],
            port=self.port,
            properties=self.txt,
            server=f"{label}.local.",
        )
        await self._azc.async_register_service(self._info, cooperating_responders=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._azc is not None and self._info is not None:
            await self._azc.async_unregister_service(self._info)
        if self._azc is not None and self._shared is None:
            await self._azc.async_close()
        self._azc = self._info = None


def sample_txt() -> dict[str, tuple[str, str, dict[str, str | None]]]:
    """Return family -> (service type, instance, TXT) as each family publishes it (docs)."""
    return {
        "googlecast": (
            "_googlecast._tcp.local.",
            "Chromecast-7d1c3a9e1f2b4c5d",
            {"id": "7d1c3a9e1f2b4c5d8e9f0a1b2c3d4e5f", "md": "Chromecast", "fn": "Living Room TV",
             "ve": "05", "rs": "", "st": "0", "ca": "201221"},
        ),
        "esphome": (
            "_esphomelib._tcp.local.",
            "kitchen-sensor",
            {"mac": "a4cf12b3c4d5", "version": "2024.6.1", "platform": "ESP32",
             "board": "esp32dev", "network": "wifi", "friendly_name": "Kitchen sensor"},
        ),
        "matter": (
            "_matterc._udp.local.",
            "5F3A1B2C3D4E5F60",
            {"VP": "4874+77", "DT": "266", "DN": "Smart Plug", "CM": "1", "D": "3840"},
        ),
        "hue": (
            "_hue._tcp.local.",
            "Philips Hue - 1A2B3C",
            {"bridgeid": "001788fffe1a2b3c", "modelid": "BSB002"},
        ),
    }  # fmt: skip
