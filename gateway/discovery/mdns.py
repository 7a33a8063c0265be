"""Wi-Fi devices over mDNS/DNS-SD: discover, pair on request, poll paired devices.

One ``AsyncServiceBrowser`` watches the service types the drivers declare (RFC 6763 s4);
every service instance gets one named task that resolves it (SRV/TXT/A, RFC 6763 s5-6),
reports it to the device registry, checks that an unpaired candidate is still alive, and polls
a paired device's status over HTTP every ``poll_interval_s``, submitting a Reading per
good poll. Candidates are never contacted over HTTP. A device that misbehaves (bad TXT, HTTP
errors, timeouts, wrong content type, garbage JSON) is marked errored in the registry and
counted as ``mdns.errors.<reason>``; nothing else is affected. Logs carry pseudonyms only.
Families of the LAN inventory without a telemetry driver are paired for their announced info
and followed by mDNS only; HomeKit accessories go through ``HomeKitLink``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from drivers import announced_drivers
from drivers.base import Driver, HttpRpcDriver
from drivers.homekit import NAME as HOMEKIT
from drivers.lan.inventory import basic_fields, listing_of
from gateway.config import MdnsConfig
from gateway.counters import Counters
from gateway.devices.commands import DeviceExtras
from gateway.devices.model import MDNS, PAIRED, Candidate, DeviceEvent, DeviceInfo, Sighting
from gateway.devices.registry import DeviceRegistry
from gateway.discovery.homekit import HomeKitLink
from gateway.discovery.homekit_keys import MemoryPairings, PairingStore
from gateway.discovery.mdns_http import get_json, open_session
from gateway.discovery.mdns_liveness import Liveness
from gateway.discovery.mdns_service import MdnsService
from gateway.errors import ConfigError, DeviceError
from gateway.model import Reading

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)

Submit = Callable[[Reading], object]  # e.g. Pipeline.submit (its result is not used)


class MdnsDiscovery:
    """The mDNS transport: an async context manager and the registry's ``mdns`` Pairer.

    ``submit(reading)`` receives one Reading per good poll of a paired device; ``drivers``
    maps lowercase service type -> driver (default: every driver announced over DNS-SD);
    ``extras`` is shared with the commands, ``pairings`` keeps HomeKit pairing keys.
    """

    def __init__(
        self,
        config: MdnsConfig,
        registry: DeviceRegistry,
        submit: Submit,
        counters: Counters,
        *,
        drivers: Mapping[str, Driver] | None = None,
        extras: DeviceExtras | None = None,
        pairings: PairingStore | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._submit = submit
        self._counters = counters
        self._drivers = dict(announced_drivers() if drivers is None else drivers)
        self._extras = DeviceExtras() if extras is None else extras
        self._pairings = MemoryPairings() if pairings is None else pairings
        self._homekit: HomeKitLink | None = None
        self._services: dict[str, MdnsService] = {}
        self._by_device: dict[str, MdnsService] = {}
        self._skipped: set[str] = set()  # HomeKit candidates a window passed over (no code)
        self._ending: set[asyncio.Task[None]] = set()
        self._undo: list[Callable[[], None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._liveness: Liveness | None = None

    async def __aenter__(self) -> Self:
        interfaces = list(self._config.interfaces) or InterfaceChoice.All
        try:
            # zeroconf leaks a socket when it fails on a foreign address: check them first.
            for address in self._config.interfaces:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind((address, 0))
            self._azc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        except OSError as exc:
            raise ConfigError(
                "discovery.mdns.interfaces",
                f"cannot listen for mDNS on {', '.join(self._config.interfaces) or 'any interface'}"
                f" ({exc}); list IPv4 addresses of this host's interfaces, or none for all",
            ) from exc
        try:
            self._liveness = Liveness(self._azc.zeroconf, self._on_alive)
            self._liveness.start()
            self._browser = AsyncServiceBrowser(
                self._azc.zeroconf, sorted(self._drivers), handlers=[self._on_service_state_change]
            )
            self._homekit = HomeKitLink(
                self._azc, self._registry, self._submit, self._counters, self._pairings,
                timeout_s=max(self._config.http_timeout_s * 10, 5.0),
                announced=self._by_device.__contains__,
            )  # fmt: skip
            await self._homekit.start()
            self._extras.on_release(HOMEKIT, self._homekit.remove)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self._undo = [
            self._registry.add_pairer(MDNS, self),
            self._registry.subscribe(self._on_device_event),
        ]
        logger.info("mdns discovery started", extra={"types": sorted(self._drivers)})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for undo in self._undo:
            undo()
        # Stop the sources of new tasks first, then the tasks, then the sockets.
        if self._homekit is not None:
            await self._homekit.close()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._liveness is not None:
            self._liveness.stop()
        tasks = [s.task for s in self._services.values() if s.task is not None]
        tasks += self._ending
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._services.clear()
        self._by_device.clear()
        if self._azc is not None:
            await self._azc.async_close()
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # the first device seen: see open_session
            self._session = open_session()
        return self._session

    # --- Pairer ---------------------------------------------------------------------------
    async def read_info(self, candidate: Candidate) -> DeviceInfo:
        """Read a candidate's device info (the ``mdns`` Pairer); raise DeviceError.

        HTTP drivers: info, then status for the upgrade info (so it is known from pairing on);
        HomeKit: pair-setup with the offered setup code; inventory families: the announcement.
        """
        driver = next((d for d in self._drivers.values() if d.name == candidate.driver), None)
        if driver is None or self._azc is None or self._homekit is None:
            raise DeviceError("unsupported", "no mDNS driver for this device")
        if driver.name == HOMEKIT:
            return await self._homekit.pair(candidate, self._extras.setup_code(candidate.id))
        if not isinstance(driver, HttpRpcDriver):
            svc = self._by_device.get(candidate.id)
            if svc is None or svc.listing is None:
                raise DeviceError("lost", "the device's announcement is gone")
            found = svc.listing
            model, firmware = found.model or found.family, found.firmware or "unknown"
            return DeviceInfo(model=model, firmware=firmware, mac=found.mac, name=found.name)
        try:
            http, timeout = self._http(), self._config.http_timeout_s
            body = await get_json(http, candidate.address, driver.info_path, timeout)
            info = driver.parse_info(body, expected_id=candidate.stable_id)
            status = await get_json(http, candidate.address, driver.status_path, timeout)
            report = driver.parse_status(status)
        except DeviceError as exc:
            self._counters.inc(f"mdns.errors.{exc.reason}")
            raise
        return dataclasses.replace(
            info, update_available=report.update_available, update_version=report.update_version
        )

    def auto_pairs(self, candidate: Candidate) -> bool:
        """Return whether a permit_join window may pair ``candidate`` (the registry asks).

        Not a HomeKit accessory without a setup code: the code is the user's explicit consent,
        so a window skips it (counted once, ``homekit.skipped_without_code``), never retries it.
        """
        if candidate.driver != HOMEKIT or self._extras.setup_code(candidate.id) is not None:
            return True
        if candidate.id not in self._skipped:
            self._skipped.add(candidate.id)
            self._counters.inc("homekit.skipped_without_code")
            logger.info(
                "homekit candidate left to pair with its code", extra={"device": candidate.id}
            )
        return False

    # --- zeroconf callbacks (event loop) --------------------------------------------------
    def _on_service_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        key = name.lower()
        if state_change is ServiceStateChange.Removed:
            self._on_removed(key)
            return
        svc = self._services.get(key)
        if svc is None:
            driver = self._drivers.get(service_type.lower())
            if driver is None:
                return
            svc = MdnsService(service_type, name, driver, self._registry.pseudonym(name))
            self._services[key] = svc
            svc.task = asyncio.create_task(self._run(svc), name=f"mdns-{svc.log_id}")
        # Added or Updated (a TXT or address change, RFC 6762 s8.4): read it again now.
        svc.resolve = True
        svc.wake.set()

    def _on_removed(self, key: str) -> None:
        svc = self._services.pop(key, None)
        if svc is None:
            return
        if svc.task is not None:
            svc.task.cancel()
            self._ending.add(svc.task)
            svc.task.add_done_callback(self._ending.discard)
        if self._liveness is not None:
            self._liveness.unwatch(svc.name)
        if svc.device is not None:
            if self._by_device.get(svc.device) is svc:
                del self._by_device[svc.device]
                self._skipped.discard(svc.device)
            self._registry.set_offline(svc.device)

    def _on_alive(self, name: str) -> None:
        # A candidate's liveness comes from mDNS answers, as does a paired inventory device's;
        # a paired HTTP device's from its polls, a HomeKit accessory's from its connection.
        svc = self._services.get(name)
        if (
            svc is not None
            and svc.sighting is not None
            and svc.device is not None
            and (not self._registry.is_paired(svc.device) or self._follows_mdns(svc))
        ):
            self._registry.seen(svc.sighting)

    @staticmethod
    def _follows_mdns(svc: MdnsService) -> bool:
        return not isinstance(svc.driver, HttpRpcDriver) and svc.driver.name != HOMEKIT

    def _on_device_event(self, event: DeviceEvent) -> None:
        svc = self._by_device.get(event.device) if event.transport == MDNS else None
        if svc is None:
            return
        if event.kind == PAIRED:
            svc.wake.set()  # poll right away rather than at the next interval
        if self._follows_mdns(svc) and self._registry.is_paired(event.device):
            # device.basic and online status only: one reading per paired/online/offline change.
            view = self._registry.get(event.device)
            if view is not None and (fields := basic_fields(event.kind, view)):
                self._submit(Reading(event.device, svc.driver.name, time.time(), fields))

    # --- per-service task -----------------------------------------------------------------
    async def _run(self, svc: MdnsService) -> None:
        while True:
            svc.wake.clear()
            # Resolve on every announcement, and at every interval while the last one was
            # unusable (a TXT record sent within a second of the previous one stays cached
            # beside it for a while, RFC 6762 s10.2, and may be served first).
            if svc.resolve or svc.sighting is None:
                announced, svc.resolve = svc.resolve, False
                await self._resolve(svc, announced=announced)
            elif svc.device is not None and (
                not self._registry.is_paired(svc.device) or self._follows_mdns(svc)
            ):
                assert self._liveness is not None
                self._liveness.query(svc.name)
            if (
                svc.sighting is not None
                and svc.device is not None
                and self._registry.is_paired(svc.device)
            ):
                if isinstance(svc.driver, HttpRpcDriver):
                    await self._poll(svc, svc.driver, svc.sighting, svc.device)
                elif svc.driver.name == HOMEKIT:
                    assert self._homekit is not None
                    if self._homekit.keep_up(svc.device):
                        self._registry.seen(svc.sighting)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.poll_interval_s):
                    await svc.wake.wait()

    async def _resolve(self, svc: MdnsService, *, announced: bool) -> None:
        assert self._liveness is not None
        try:
            sighting = await self._read_announcement(svc)
        except DeviceError as exc:
            svc.sighting = None  # no collection while the announcement is unusable
            # Count each bad announcement once, not each re-read of the same one.
            self._fault(svc, exc, count=announced or exc.reason != svc.last_error)
            return
        svc.sighting, svc.last_error = sighting, None
        svc.device = self._registry.seen(sighting)
        self._by_device[svc.device] = svc
        if svc.listing is not None:
            self._extras.set_details(
                svc.device, (("family", svc.listing.family), *svc.listing.details)
            )
        self._liveness.watch(svc.name)

    async def _read_announcement(self, svc: MdnsService) -> Sighting:
        """Resolve ``svc`` (SRV, TXT, A; RFC 6763 s5-6) into a Sighting; raise DeviceError."""
        assert self._azc is not None
        info = AsyncServiceInfo(svc.type, svc.name)
        if not await info.async_request(self._azc.zeroconf, self._config.http_timeout_s * 1000):
            raise DeviceError("timeout", "the service did not resolve")
        found = listing_of(svc.driver, svc.type, svc.instance, info.properties)
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses or not info.port:
            raise DeviceError("missing_property", "the service has no IPv4 address")
        svc.listing = found
        return Sighting(
            transport=MDNS,
            stable_id=found.stable_id,
            driver=svc.driver.name,
            address=f"{addresses[0]}:{info.port}",
            name=found.name if self._follows_mdns(svc) else None,
            model=found.model,
            firmware=found.firmware,
        )

    async def _poll(
        self, svc: MdnsService, driver: HttpRpcDriver, sighting: Sighting, device: str
    ) -> None:
        try:
            body = await get_json(
                self._http(), sighting.address, driver.status_path, self._config.http_timeout_s
            )
            report = driver.parse_status(body)
        except DeviceError as exc:
            self._fault(svc, exc)
            return
        if not self._registry.is_paired(device):
            return  # unpaired while the request was in flight: collect nothing
        self._registry.seen(sighting)
        self._registry.update(
            device, update_available=report.update_available, update_version=report.update_version
        )
        self._counters.inc("mdns.readings")
        self._submit(
            Reading(device=device, driver=svc.driver.name, ts=time.time(), fields=report.fields)
        )

    def _fault(self, svc: MdnsService, error: DeviceError, *, count: bool = True) -> None:
        if count:
            self._counters.inc(f"mdns.errors.{error.reason}")
        if svc.device is not None and self._registry.set_offline(svc.device, error):
            svc.last_error = error.reason
            return  # the registry logged the transition
        if svc.last_error != error.reason:  # warn once per reason, not at every poll
            logger.warning(
                "mdns device fault",
                extra={
                    "device": svc.device or svc.log_id,
                    "reason": error.reason,
                    "detail": str(error),
                },
            )
        svc.last_error = error.reason
