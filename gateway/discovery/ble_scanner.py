"""Keeping one bleak scanner alive: passive or active, watchdog, recovery with backoff.

BlueZ scans passively only through ``org.bluez.AdvertisementMonitor1`` (BlueZ >= 5.56 with
experimental features, kernel >= 5.10) and only for advertisements matching or-patterns; where
that is missing the scanner falls back to active scanning once and stays there. A scanner that
has heard nothing for ``watchdog_s`` is restarted (adapters wedge; HA's watchdog does the same).
Failures (adapter gone, ``org.bluez.Error.*``, the bus gone) are retried with the daemon's one
backoff helper; the daemon never exits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.exc import BleakDBusError, BleakError
from dbus_fast.errors import DBusError

from drivers.ble.matching import AdPattern
from gateway.backoff import Backoff
from gateway.config import BleConfig
from gateway.counters import Counters

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

logger = logging.getLogger(__name__)

DetectionCallback = Callable[["BLEDevice", "AdvertisementData"], None]
_RECOVERABLE: Final = (BleakError, DBusError, OSError, EOFError, TimeoutError)
_PASSIVE_UNSUPPORTED: Final = frozenset(
    {
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.UnknownInterface",
        "org.bluez.Error.NotSupported",
    }
)


class BleScanner:
    """Runs bleak's scanner while ``enabled`` is set; counts ``ble.scanner_starts``,
    ``ble.scanner_errors`` and ``ble.watchdog_restarts``.

    ``or_patterns`` None means passive scanning cannot express what the drivers match, so the
    scanner is active whatever the configuration says.
    """

    def __init__(
        self,
        config: BleConfig,
        callback: DetectionCallback,
        *,
        counters: Counters,
        backoff: Backoff,
        or_patterns: Sequence[AdPattern] | None,
    ) -> None:
        self._config = config
        self._callback = callback
        self._counters = counters
        self._backoff = backoff
        self._patterns = or_patterns
        self.mode = config.scanning_mode if or_patterns is not None else "active"
        self._last_advert = 0.0
        self._last_error = ""

    async def run(self, enabled: asyncio.Event, disabled: asyncio.Event) -> None:
        """Scan whenever ``enabled`` is set, stop as soon as ``disabled`` is; never returns."""
        delays = self._backoff.delays()
        while True:
            await enabled.wait()
            try:
                stale = await self._scan(disabled)
            except _RECOVERABLE as exc:
                if self.mode == "passive" and _passive_unsupported(exc):
                    logger.info("passive scanning unsupported by this BlueZ; scanning actively")
                    self.mode = "active"
                    continue
                delay = next(delays)
                self._counters.inc("ble.scanner_errors")
                self._log_error(exc, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await disabled.wait()
                continue
            delays = self._backoff.delays()
            self._last_error = ""
            if stale:
                self._counters.inc("ble.watchdog_restarts")
                logger.warning(
                    "no advertisement for %.0f s: restarting the scanner", self._config.watchdog_s
                )

    def _on_detection(self, device: BLEDevice, data: AdvertisementData) -> None:
        self._last_advert = time.monotonic()
        self._callback(device, data)

    async def _scan(self, disabled: asyncio.Event) -> bool:
        """Scan until the watchdog fires (True) or bluetooth goes off (False)."""
        async with self._new_scanner():
            self._counters.inc("ble.scanner_starts")
            self._last_advert = time.monotonic()
            while True:
                remaining = self._last_advert + self._config.watchdog_s - time.monotonic()
                if remaining <= 0:
                    return True
                try:
                    async with asyncio.timeout(remaining):
                        await disabled.wait()
                except TimeoutError:
                    continue
                return False

    def _new_scanner(self) -> BleakScanner:
        args = BlueZScannerArgs(adapter=self._config.adapter)
        if self.mode == "passive" and self._patterns is not None:
            args["or_patterns"] = [
                OrPattern(start, AdvertisementDataType(kind), content)
                for start, kind, content in self._patterns
            ]
            return BleakScanner(self._on_detection, scanning_mode="passive", bluez=args)
        return BleakScanner(self._on_detection, scanning_mode="active", bluez=args)

    def _log_error(self, exc: BaseException, delay: float) -> None:
        kind = exc.dbus_error if isinstance(exc, BleakDBusError) else type(exc).__name__
        # Warn once per kind of failure (an adapter that stays away must not flood the log);
        # exception texts may name device paths, so only the kind is logged.
        level = logging.DEBUG if kind == self._last_error else logging.WARNING
        self._last_error = kind
        logger.log(
            level,
            "BLE scanner failed; retrying",
            extra={"error": kind, "retry_in_s": round(delay, 2)},
        )


def _passive_unsupported(exc: BaseException) -> bool:
    if isinstance(exc, BleakDBusError):
        return exc.dbus_error in _PASSIVE_UNSUPPORTED
    return isinstance(exc, BleakError) and "passive scanning" in str(exc)
