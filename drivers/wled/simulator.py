"""A simulated WLED controller for tests, the demo and benchmarks: ``_wled._tcp`` on its own
zeroconf (loopback in tests) and WLED's JSON API (``/json/info``, ``/json/si``) over HTTP,
with the answers shaped as kno.wled.ge/interfaces/json-api documents them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from drivers.lan.simulator import Announcer
from drivers.wled.json_api import INFO_PATH, STATUS_PATH
from drivers.wled.txt import SERVICE_TYPE

SHUTDOWN_TIMEOUT_S: Final = 0.5


class SimulatedWled:
    """One simulated WLED strip; an async context manager. ``on``/``brightness`` are live."""

    def __init__(
        self,
        *,
        interfaces: Sequence[str] = ("127.0.0.1",),
        host: str = "127.0.0.1",
        name: str = "WLED Desk",
        version: str = "0.14.4",
        mac: str | None = None,
    ) -> None:
        self.interfaces = list(interfaces)
        self.host = host
        self.name = name
        self.version = version
        self.mac = (mac or secrets.token_hex(6)).replace(":", "").lower()
        self.on = True
        self.brightness = 128
        self.requests = 0
        self.broken = False
        self._started = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._announcer: Announcer | None = None

    @property
    def instance(self) -> str:
        """Return the mDNS instance name WLED uses (``wled-`` + last 6 MAC digits)."""
        return f"wled-{self.mac[-6:]}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get(INFO_PATH, self._on_info)
        app.router.add_get(STATUS_PATH, self._on_si)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        await web.TCPSite(runner, self.host, 0).start()
        self._runner = runner
        port = int(runner.addresses[0][1])
        self._announcer = Announcer(
            SERVICE_TYPE, self.instance, {"mac": self.mac}, port=port,
            host=self.host, interfaces=self.interfaces,
        )  # fmt: skip
        await self._announcer.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._announcer is not None:
            await self._announcer.__aexit__(None, None, None)
        if self._runner is not None:
            await self._runner.cleanup()
        self._announcer = self._runner = None

    def info(self) -> dict[str, Any]:
        """Return the ``/json/info`` object (WLED 0.14 shape, trimmed to what is documented)."""
        return {
            "ver": self.version, "vid": 2405180, "leds": {
                "count": 30, "pwr": 420 if self.on else 120, "fps": 42, "maxpwr": 850,
                "maxseg": 32, "lc": 1, "seglc": [1], "rgbw": False, "wv": 0, "cct": 0,
            },
            "str": False, "name": self.name, "udpport": 21324, "live": False,
            "lm": "", "lip": "", "ws": 0, "fxcount": 187, "palcount": 71,
            "wifi": {"bssid": "00:00:00:00:00:00", "rssi": -61, "signal": 78, "channel": 6},
            "fs": {"u": 12, "t": 983, "pmt": 0}, "ndc": 0, "arch": "esp32",
            "core": "v3.3.6-16-gcc5440f6a2", "lwip": 0, "freeheap": 123456,
            "uptime": int(time.monotonic() - self._started), "opt": 79,
            "brand": "WLED", "product": "FOSS", "mac": self.mac, "ip": self.host,
        }  # fmt: skip

    def state(self) -> dict[str, Any]:
        """Return the ``/json/state`` object (documented keys; one segment)."""
        return {
            "on": self.on, "bri": self.brightness, "transition": 7, "ps": -1, "pl": -1,
            "nl": {"on": False, "dur": 60, "mode": 1, "tbri": 0, "rem": -1},
            "udpn": {"send": False, "recv": True}, "lor": 0, "mainseg": 0,
            "seg": [{
                "id": 0, "start": 0, "stop": 30, "len": 30, "grp": 1, "spc": 0, "of": 0,
                "on": True, "frz": False, "bri": 255, "cct": 127,
                "col": [[255, 160, 0], [0, 0, 0], [0, 0, 0]], "fx": 0, "sx": 128,
                "ix": 128, "pal": 0, "sel": True, "rev": False, "mi": False,
            }],
        }  # fmt: skip

    async def _on_info(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.broken:
            return web.json_response({"leds": "not an object", "mac": 5})
        return web.json_response(self.info())

    async def _on_si(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.broken:
            return web.json_response({"state": [], "info": None})
        return web.json_response({"state": self.state(), "info": self.info()})
