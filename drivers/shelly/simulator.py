"""A simulated Shelly Gen2 device for tests, the demo and benchmarks.

It registers ``_shelly._tcp.local.`` on its own AsyncZeroconf bound to the given interfaces
(tests and the demo: ``["127.0.0.1"]``, never the default) with a realistic TXT record, and
serves ``GET /rpc/Shelly.GetDeviceInfo`` and ``/rpc/Shelly.GetStatus`` over HTTP. Firmware,
telemetry, available updates, faults and presence are controllable at run time.

``python -m drivers.shelly.simulator --host ADDR`` runs one until SIGTERM (it prints its id and
port as one JSON line); the network-namespace test uses that.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import secrets
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from drivers.shelly.rpc import INFO_PATH, STATUS_PATH
from drivers.shelly.txt import SERVICE_TYPE

SHUTDOWN_TIMEOUT_S: Final = 0.5


class Fault(enum.Enum):
    """Ways the simulated device can misbehave on its HTTP RPC endpoints."""

    HTTP_500 = "http_500"
    GARBAGE_JSON = "garbage_json"
    WRONG_CONTENT_TYPE = "wrong_content_type"
    HANG = "hang"
    BAD_SHAPE = "bad_shape"


class SimulatedShelly:
    """One simulated Shelly Gen2 switch (Plus 1PM by default); an async context manager."""

    def __init__(
        self,
        *,
        interfaces: Sequence[str] = ("127.0.0.1",),
        host: str = "127.0.0.1",
        app: str = "Plus1PM",
        model: str = "SNSW-001P16EU",
        firmware: str = "1.0.0",
        name: str | None = None,
        mac: str | None = None,
        probe: bool = True,
    ) -> None:
        self.interfaces = list(interfaces)
        self.host = host
        self.app = app
        self.model = model
        self.firmware = firmware
        self.name = name
        self.mac = (mac or secrets.token_hex(6)).replace(":", "").upper()
        self.device_id = f"shelly{app.lower()}-{self.mac.lower()}"
        self.service_name = f"{self.device_id}.{SERVICE_TYPE}"
        self.port = 0
        self.probe = probe
        self.fault: Fault | None = None
        self.txt_override: Mapping[str, str | None] | None = None
        self.update_stable: str | None = None
        self.update_beta: str | None = None
        self.switch: dict[str, Any] = {
            "output": True,
            "apower": 12.5,
            "voltage": 230.1,
            "current": 0.054,
            "energy": 1234.5,
            "temperature": 41.2,
        }
        self.requests = 0
        self._started = time.monotonic()
        self._azc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.appear()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disappear()

    async def appear(self) -> None:
        """Start serving HTTP and register the mDNS service (again, on the same port)."""
        if self._runner is None:
            self._release = asyncio.Event()
            app = web.Application()
            app.router.add_get(INFO_PATH, self._on_info)
            app.router.add_get(STATUS_PATH, self._on_status)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            await runner.setup()
            await web.TCPSite(runner, self.host, self.port).start()
            self._runner = runner
            self.port = int(runner.addresses[0][1])
        if self._azc is None:
            self._azc = AsyncZeroconf(interfaces=self.interfaces, ip_version=IPVersion.V4Only)
        if self._info is None:
            self._info = self._service_info()
            # Skipping the RFC 6762 s8.1 probe saves ~1.2 s where names cannot collide.
            await self._azc.async_register_service(
                self._info, cooperating_responders=not self.probe
            )

    async def disappear(self, *, goodbye: bool = True) -> None:
        """Stop answering: withdraw the service (RFC 6762 s10.1 goodbye unless ``goodbye`` is
        False, as after a power cut) and stop serving HTTP, closing open connections."""
        if self._azc is not None:
            if self._info is not None:
                if goodbye:
                    await self._azc.async_unregister_service(self._info)
                else:
                    self._azc.zeroconf.registry.async_remove(self._info)
                self._info = None
            if goodbye:
                await self._azc.async_close()
                self._azc = None
        if self._runner is not None:
            self._release.set()
            await self._runner.cleanup()
            self._runner = None

    # --- controls -------------------------------------------------------------------------
    async def set_firmware(self, version: str) -> None:
        """Change the firmware version in the device info and the TXT record (re-announced)."""
        self.firmware = version
        await self._reannounce()

    async def set_txt(self, properties: Mapping[str, str | None] | None) -> None:
        """Announce ``properties`` as the TXT record (None: back to the realistic one)."""
        self.txt_override = properties
        await self._reannounce()

    def set_update(self, stable: str | None, beta: str | None = None) -> None:
        """Offer firmware updates in ``sys.available_updates`` (None: none)."""
        self.update_stable, self.update_beta = stable, beta

    def set_telemetry(self, **values: Any) -> None:
        """Change switch:0 values: output, apower, voltage, current, energy, temperature."""
        unknown = set(values) - set(self.switch)
        if unknown:
            raise ValueError(f"unknown telemetry {sorted(unknown)}; known: {sorted(self.switch)}")
        self.switch.update(values)

    def set_fault(self, fault: Fault | None) -> None:
        """Make both RPC endpoints misbehave as ``fault`` (None: answer properly)."""
        self.fault = fault
        if fault is not Fault.HANG:
            self._release.set()
            self._release = asyncio.Event()

    # --- answers --------------------------------------------------------------------------
    def txt(self) -> dict[str, str | None]:
        """Return the TXT record announced now."""
        if self.txt_override is not None:
            return dict(self.txt_override)
        return {"gen": "2", "app": self.app, "ver": self.firmware, "id": self.device_id}

    def device_info(self) -> dict[str, Any]:
        """Return the ``Shelly.GetDeviceInfo`` result."""
        return {
            "name": self.name,
            "id": self.device_id,
            "mac": self.mac,
            "slot": 0,
            "model": self.model,
            "gen": 2,
            "fw_id": f"20240101-000000/{self.firmware}-gsim",
            "ver": self.firmware,
            "app": self.app,
            "auth_en": False,
            "auth_domain": None,
        }

    def status(self) -> dict[str, Any]:
        """Return the ``Shelly.GetStatus`` result."""
        s, now = self.switch, int(time.time())
        updates: dict[str, Any] = {}
        if self.update_stable is not None:
            updates["stable"] = {"version": self.update_stable}
        if self.update_beta is not None:
            updates["beta"] = {"version": self.update_beta}
        return {
            "ble": {},
            "cloud": {"connected": False},
            "mqtt": {"connected": False},
            "input:0": {"id": 0, "state": False},
            "switch:0": {
                "id": 0,
                "source": "init",
                "output": s["output"],
                "apower": s["apower"],
                "voltage": s["voltage"],
                "freq": 50.0,
                "current": s["current"],
                "aenergy": {"total": s["energy"], "by_minute": [0.0, 0.0, 0.0], "minute_ts": now},
                "temperature": {
                    "tC": s["temperature"],
                    "tF": round(s["temperature"] * 9 / 5 + 32, 1),
                },
            },
            "sys": {
                "mac": self.mac,
                "restart_required": False,
                "time": time.strftime("%H:%M"),
                "unixtime": now,
                "uptime": int(time.monotonic() - self._started),
                "ram_size": 260000,
                "ram_free": 120000,
                "fs_size": 458752,
                "fs_free": 131072,
                "cfg_rev": 7,
                "kvs_rev": 0,
                "schedule_rev": 0,
                "webhook_rev": 0,
                "available_updates": updates,
            },
            "wifi": {"sta_ip": self.host, "status": "got ip", "ssid": "HomeNet", "rssi": -58},
            "ws": {"connected": False},
        }

    async def _on_info(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(self.device_info())

    async def _on_status(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(self.status())

    async def _answer(self, result: dict[str, Any]) -> web.StreamResponse:
        self.requests += 1
        fault = self.fault
        if fault is Fault.HANG:
            await self._release.wait()
            return web.Response(status=503)
        if fault is Fault.HTTP_500:
            return web.json_response({"code": -114, "message": "Internal error"}, status=500)
        if fault is Fault.GARBAGE_JSON:
            return web.Response(body=b'{"switch:0": {"apower": 1', content_type="application/json")
        if fault is Fault.WRONG_CONTENT_TYPE:
            return web.Response(text="<html>busy</html>", content_type="text/html")
        if fault is Fault.BAD_SHAPE:
            return web.json_response(["not", "an", "object"])
        return web.json_response(result)

    def _service_info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            addresses=[socket.inet_aton(self.host)],
            port=self.port,
            server=f"{self.device_id}.local.",
            properties=self.txt(),
        )

    async def _reannounce(self) -> None:
        if self._azc is not None and self._info is not None:
            self._info = self._service_info()
            await self._azc.async_update_service(self._info)


async def _main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description="Run one simulated Shelly Gen2 device.")
    parser.add_argument("--host", required=True, help="IPv4 address to serve and announce")
    parser.add_argument("--interface", action="append", help="mDNS interface address(es)")
    parser.add_argument("--firmware", default="1.0.0")
    args = parser.parse_args(argv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    device = SimulatedShelly(
        interfaces=args.interface or [args.host],
        host=args.host,
        firmware=args.firmware,
        probe=False,
    )
    async with device:
        sys.stdout.write(json.dumps({"id": device.device_id, "port": device.port}) + "\n")
        sys.stdout.flush()
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
