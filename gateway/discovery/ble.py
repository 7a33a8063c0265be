"""BLE discovery: bleak's scanner feeding the pure per-advertisement path, kept alive.

``BleDiscovery`` is an async context manager. While the ``bluetooth`` consent flag is on it
scans (passive with BlueZ or-patterns derived from the drivers' matchers where BlueZ supports
it, else active), reports sightings and online status to the device registry, submits readings
of paired devices, and pairs candidates for the registry (it is the ``ble`` Pairer). A watchdog
restarts scanning after ``watchdog_s`` without an advertisement; BlueZ and D-Bus errors
(adapter gone and back, ``org.bluez.Error.*``) are retried with ``gateway.backoff``. Logs carry
pseudonyms only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

from drivers.ble import DRIVERS, Advert, BleDriver
from drivers.ble.matching import Matcher
from gateway.backoff import Backoff
from gateway.config import BleConfig
from gateway.consent.catalogue import OFF
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices.model import BLE, UNPAIRED, Candidate, DeviceEvent, DeviceInfo
from gateway.devices.model import Sighting as DeviceSighting
from gateway.discovery.ble_ingest import BleIngest
from gateway.discovery.ble_online import OnlineTracker
from gateway.discovery.ble_pairing import (
    BindKeyStore,
    BleDeviceInformation,
    ReadDeviceInformation,
    read_device_information,
)
from gateway.discovery.ble_scanner import BleScanner
from gateway.errors import DeviceError
from gateway.model import Reading

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

logger = logging.getLogger(__name__)

DEFAULT_REPORT_INTERVAL_S: Final = 30.0
MAX_REMEMBERED: Final = 4096
SCANNER_BACKOFF: Final = Backoff(initial=1.0, cap=60.0)
"""Restart delays after a BlueZ or D-Bus failure: 0.5-1 s, doubling, at most a minute."""


class BleRegistry(Protocol):
    """What BLE discovery needs of the device registry (gateway.devices.DeviceRegistry)."""

    def pseudonym(self, stable_id: str) -> str:
        """Return the pseudonym of the device whose stable id is ``stable_id``."""
        ...

    def seen(self, sighting: DeviceSighting) -> str:
        """Record that a device is alive; return its pseudonym."""
        ...

    def set_offline(self, device_id: str, error: DeviceError | None = None) -> bool:
        """Mark a device offline; return whether its state changed."""
        ...

    def is_paired(self, device_id: str) -> bool:
        """Return whether ``device_id`` is paired (collection allowed) right now."""
        ...

    def add_pairer(self, transport: str, pairer: BleDiscovery) -> Callable[[], None]:
        """Use ``pairer`` for candidates of ``transport``; return an undo function."""
        ...

    def subscribe(self, listener: Callable[[DeviceEvent], None]) -> Callable[[], None]:
        """Call ``listener`` after every device change; return an unsubscribe function."""
        ...


class BleDiscovery:
    """Scans, reports and collects over BLE while the ``bluetooth`` consent flag is on.

    ``radio=False`` runs no bleak scanner: advertisements arrive only through
    ``detection_callback`` (the simulator); ``read_info`` is how pairing reaches a device.
    """

    def __init__(
        self,
        config: BleConfig,
        *,
        registry: BleRegistry,
        policy: ConsentPolicy,
        submit: Callable[[Reading], object],
        counters: Counters,
        bind_keys: BindKeyStore | None = None,
        drivers: Sequence[BleDriver] = DRIVERS,
        backoff: Backoff = SCANNER_BACKOFF,
        report_interval_s: float = DEFAULT_REPORT_INTERVAL_S,
        radio: bool = True,
        read_info: ReadDeviceInformation = read_device_information,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._registry = registry
        self._policy = policy
        self._submit = submit
        self._counters = counters
        self._report_interval = report_interval_s
        self._clock = clock
        self._radio = radio
        self._read_info = read_info
        self._drivers = {d.name: d for d in drivers}
        matcher = Matcher(drivers)
        self._scanner = BleScanner(
            config,
            self.detection_callback,
            counters=counters,
            backoff=backoff,
            or_patterns=matcher.or_patterns(),
        )
        self._ingest = BleIngest(
            config,
            counters,
            matcher=matcher.match,
            bind_keys=None if bind_keys is None else bind_keys.bind_key,
        )
        self._online = OnlineTracker(config.offline_after_s)
        self._active = False
        self._enabled = asyncio.Event()
        self._disabled = asyncio.Event()
        self._ids: dict[str, str] = {}  # address -> pseudonym (devices a driver matched)
        self._next_report: dict[str, float] = {}  # address -> monotonic time of next sighting
        # address -> latest BLEDevice and advertised name, for pairing
        self._devices: dict[str, tuple[BLEDevice, str | None]] = {}
        self._connecting: set[asyncio.Task[BleDeviceInformation]] = set()
        self._undo: list[Callable[[], None]] = []

    # --- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._undo = [
            self._policy.subscribe(self._on_consent),
            self._registry.subscribe(self._on_device_event),
            self._registry.add_pairer(BLE, self),
        ]
        self._on_consent(self._policy)
        return self

    def loops(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """Return the transport's long-lived loops, for the daemon's task group to run."""
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {"ble-online": self._sweep}
        if self._radio:
            loops["ble-scanner"] = lambda: self._scanner.run(self._enabled, self._disabled)
        return loops

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for undo in self._undo:
            undo()
        self._active = False
        tasks = list(self._connecting)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, DeviceError):
                await task

    @property
    def active(self) -> bool:
        """Return whether scanning and connecting are allowed (``bluetooth`` consent on)."""
        return self._active

    @property
    def scanning_mode(self) -> str:
        """Return the scanning mode in use: ``passive`` or ``active``."""
        return self._scanner.mode

    # --- consent and registry events ---------------------------------------------------------
    def _on_consent(self, policy: ConsentPolicy) -> None:
        self._set_active(active=policy.flag("bluetooth") != OFF)

    def _set_active(self, *, active: bool) -> None:
        if active == self._active:
            return
        self._active = active
        if active:
            self._disabled.clear()
            self._enabled.set()
            logger.info("bluetooth on: scanning")
            return
        # Off takes effect now: the detection callback drops everything from here on, the scan
        # loop stops the scanner, and connections in progress are cancelled.
        self._enabled.clear()
        self._disabled.set()
        for task in self._connecting:
            task.cancel()
        logger.info("bluetooth off: scanning and connecting stopped")

    def bind_key_changed(self, stable_id: str) -> None:
        """Decode the device's next message with the bind key the store now holds for it."""
        self._ingest.forget(stable_id)

    def device_key_changed(self, device: str) -> None:
        """Decode the next messages of ``device`` (a pseudonym) with its current bind key."""
        for address in [a for a, d in self._ids.items() if d == device]:
            self._ingest.forget(address)

    def _on_device_event(self, event: DeviceEvent) -> None:
        if event.transport != BLE or event.kind != UNPAIRED:
            return
        # Collection already stopped (is_paired is false); drop the device's decoder state.
        for address in [a for a, d in self._ids.items() if d == event.device]:
            self._forget(address)

    # --- the advertisement path --------------------------------------------------------------
    def detection_callback(self, device: BLEDevice, data: AdvertisementData) -> None:
        """Take one advertisement from bleak (or the simulator); never raises."""
        if not self._active:
            return
        now = time.monotonic()
        advert = Advert(
            device.address,
            data.rssi,
            data.local_name,
            data.service_data,
            data.manufacturer_data,
            tuple(data.service_uuids),
        )
        ingest = self._ingest
        hit = ingest.classify(advert)
        if hit is None:
            return
        driver, payload = hit
        address = advert.address
        device_id = self._ids.get(address)
        if device_id is None:
            device_id = self._remember(address, self._registry.pseudonym(address))
        self._devices[address] = (device, _display_name(advert.name, address))
        paired = self._registry.is_paired(device_id)
        if self._online.seen(address, now) or now >= self._next_report.get(address, 0.0):
            self._report(advert, device_id, driver, payload, now, paired=paired)
        if ingest.is_duplicate(address, driver, payload, now) or not paired:
            return
        if self._policy.flag("bluetooth", device_id) == OFF:  # per-device override
            return
        decoded = ingest.decode(advert, driver, payload, now)
        if decoded is None or not decoded.fields:
            return
        fields = dict(decoded.fields)
        fields["rssi"] = advert.rssi
        self._submit(Reading(device_id, driver.name, self._clock(), fields))

    def _remember(self, address: str, device_id: str) -> str:
        if len(self._ids) >= MAX_REMEMBERED:  # bounded even under a flood of new addresses
            self._forget(next(iter(self._ids)))
        self._ids[address] = device_id
        return device_id

    def _forget(self, address: str) -> None:
        self._ids.pop(address, None)
        self._devices.pop(address, None)
        self._next_report.pop(address, None)
        self._online.forget(address)
        self._ingest.forget(address)

    def _report(
        self,
        advert: Advert,
        device_id: str,
        driver: BleDriver,
        payload: bytes,
        now: float,
        *,
        paired: bool,
    ) -> None:
        """Tell the registry the device is alive (a candidate's model needs one decode)."""
        self._next_report[advert.address] = now + self._report_interval
        model = None if paired else driver.model(advert, payload, now)
        self._counters.inc("ble.sightings")
        self._registry.seen(
            DeviceSighting(
                transport=BLE,
                stable_id=advert.address,
                driver=driver.name,
                address=advert.address,
                name=_display_name(advert.name, advert.address),
                model=model,
            )
        )

    async def _sweep(self) -> None:
        interval = min(max(self._config.offline_after_s / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            for address in self._online.expire(time.monotonic()):
                device_id = self._ids.get(address) or self._registry.pseudonym(address)
                self._registry.set_offline(device_id)
                if not self._registry.is_paired(device_id):  # the registry forgot it too
                    self._forget(address)

    # --- pairing (the registry's Pairer for "ble") ---------------------------------------------
    async def read_info(self, candidate: Candidate) -> DeviceInfo:
        """Connect to ``candidate``, bond if its driver needs it, read Device Information.

        Raises DeviceError: ``bluetooth_off``, ``not_found`` (not advertising lately),
        ``connect_failed`` (after ``connect_attempts``), ``bond_failed``, ``read_failed``.
        """
        seen = self._devices.get(candidate.address)
        driver = self._drivers.get(candidate.driver)
        if not self._active:
            raise DeviceError("bluetooth_off", "Bluetooth consent is off; no connection made")
        if seen is None:
            raise DeviceError(
                "not_found", "the device has not advertised lately; wake it and pair again"
            )
        device, name = seen
        task = asyncio.create_task(
            self._read_info(
                device,
                label=candidate.id,
                attempts=self._config.connect_attempts,
                bond=driver is not None and driver.bond,
            ),
            name=f"ble-pair-{candidate.id}",
        )
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        try:
            await asyncio.wait({task})
        finally:
            task.cancel()  # a no-op once done; stops the connection if we were cancelled
        if task.cancelled():
            raise DeviceError("bluetooth_off", "Bluetooth consent was withdrawn while pairing")
        try:
            info = task.result()
        except DeviceError as exc:
            self._counters.inc(f"ble.pair_errors.{exc.reason}")
            raise
        self._counters.inc("ble.pairings")
        return _device_info(candidate, name, info)


def _display_name(name: str | None, address: str) -> str | None:
    """Return the advertised name without the address digits some firmwares append.

    ATC/pvvx thermometers advertise ``ATC_8F80A5``: the MAC's last three bytes. Names are shown
    without ``network`` consent, so that part of the MAC is cut (as bthome-ble does for titles).
    """
    if not name:
        return None
    tail = address.replace(":", "")[-6:].upper()
    if name[-len(tail) :].upper() == tail:
        return name[: -len(tail)].rstrip(" _-") or None
    return name


def _device_info(candidate: Candidate, name: str | None, info: BleDeviceInformation) -> DeviceInfo:
    """Return the registry's view of what pairing read (manufacturer folded into model)."""
    model = info.model or candidate.model or candidate.driver
    if info.manufacturer and not model.startswith(info.manufacturer):
        model = f"{info.manufacturer} {model}"
    firmware = info.firmware or info.software or candidate.firmware or "unknown"
    return DeviceInfo(model=model, firmware=firmware, mac=candidate.stable_id, name=name)
