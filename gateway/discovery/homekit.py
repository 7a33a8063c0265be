"""HomeKit accessories over IP through aiohomekit (Home Assistant's HomeKit controller library).

The mDNS transport owns the zeroconf instance and its browser of ``_hap._tcp``/``_hap._udp``
(aiohomekit finds accessories through that browser); this link pairs an accessory with the
setup code the user gave (HAP R2 s5.6, pair-setup), keeps its pairing keys sealed at rest,
reads its accessory database, subscribes to characteristic events (HAP R2 s6.8) and turns
them into Readings, follows the event connection for online status, and removes the pairing
on the accessory (HAP R2 s5.12, remove-pairing) when the device is unpaired.
aiohomekit is imported with the first HomeKit accessory the hub talks to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.homekit import NAME
from drivers.homekit.accessories import Plan, plan
from gateway.counters import Counters
from gateway.devices.model import (
    MDNS,
    PAIRED,
    UNPAIRED,
    Candidate,
    DeviceEvent,
    DeviceInfo,
    Sighting,
)
from gateway.devices.registry import DeviceRegistry
from gateway.discovery.homekit_keys import PairingStore
from gateway.errors import DeviceError
from gateway.model import Reading, Value

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncZeroconf

logger = logging.getLogger(__name__)

Submit = Callable[[Reading], object]
_STABLE_ID = "AccessoryPairingID"  # HAP R2 s5.6: the accessory's pairing identifier


@dataclass(slots=True)
class _Accessory:
    """A paired accessory the link holds: its aiohomekit pairing and what to collect."""

    pairing: Any
    sighting: Sighting
    plan: Plan | None = None
    undo: list[Callable[[], None]] = field(default_factory=list)


class HomeKitLink:
    """Pairs, reads and releases HomeKit accessories; started and closed by the mDNS transport.

    An accessory is online while its event connection is up and ``announced(device)`` (its
    mDNS service is present); either one lost makes it offline.
    """

    def __init__(
        self,
        azc: AsyncZeroconf,
        registry: DeviceRegistry,
        submit: Submit,
        counters: Counters,
        store: PairingStore,
        *,
        timeout_s: float,
        announced: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self._azc = azc
        self._registry = registry
        self._submit = submit
        self._counters = counters
        self._store = store
        self._timeout = timeout_s
        self._announced = announced  # whether mDNS announces the device now
        self._controller: Any = None
        self._held: dict[str, _Accessory] = {}
        self._stored: dict[str, dict[str, object]] = {}
        self._connecting: dict[str, asyncio.Task[Any]] = {}
        self._unsubscribe: Callable[[], None] = lambda: None

    async def start(self) -> None:
        """Load the stored pairings (the connections open later, see ``keep_up``)."""
        self._stored = await self._store.load()
        for device in [d for d in self._stored if not self._registry.is_paired(d)]:
            await self._store.forget(device)  # unpaired while the hub was down
            del self._stored[device]
        self._unsubscribe = self._registry.subscribe(self._on_device_event)

    async def close(self) -> None:
        """Close every accessory connection and the controller."""
        self._unsubscribe()
        for task in self._connecting.values():
            task.cancel()
        await asyncio.gather(*self._connecting.values(), return_exceptions=True)
        for device in list(self._held):
            await self._release(device)
        if self._controller is not None:
            await self._controller.async_stop()

    # --- pairing --------------------------------------------------------------------------
    async def pair(self, candidate: Candidate, setup_code: str | None) -> DeviceInfo:
        """Pair with ``setup_code`` and read the Accessory Information; raise DeviceError."""
        from aiohomekit import exceptions as hk  # noqa: PLC0415

        if setup_code is None:
            raise DeviceError("setup_code_required", "a HomeKit accessory needs its setup code")
        controller = await self._control()
        started = time.monotonic()
        try:
            pairing = await self._pair_setup(controller, candidate, setup_code)
        except (hk.AuthenticationError, hk.MalformedPinError) as exc:
            self._counters.inc("homekit.errors.bad_setup_code")
            raise DeviceError(
                "bad_setup_code", "the accessory refused the setup code; check its label"
            ) from exc
        except (hk.UnavailableError, hk.MaxPeersError) as exc:
            # HAP R2 s5.6.2: kTLVError_Unavailable, the accessory is paired with a controller
            # already (or, MaxPeers, holds no room for another pairing).
            raise DeviceError(
                "not_pairable", "the accessory is already paired with another controller"
            ) from exc
        except hk.BusyError as exc:  # another pair-setup under way, or a pause after wrong codes
            raise DeviceError("pairing_busy", "the accessory is busy with another pairing") from exc
        except hk.MaxTriesError as exc:  # HAP: too many failed attempts; most need a reset
            raise DeviceError(
                "too_many_attempts", "the accessory refuses pairing after too many wrong codes"
            ) from exc
        except (TimeoutError, hk.AccessoryNotFoundError) as exc:
            raise DeviceError("unreachable", "the accessory did not answer pairing") from exc
        except (hk.HomeKitException, OSError) as exc:
            raise DeviceError("pairing_failed", f"pairing failed ({type(exc).__name__})") from exc
        self._counters.inc("homekit.paired")
        data = dict(pairing.pairing_data)
        sighting = _sighting(candidate.stable_id, data)
        held = _Accessory(pairing, sighting)
        self._held[candidate.id] = held
        try:
            await self._store.save(candidate.id, data)
            self._stored[candidate.id] = data
            await self._attach(candidate.id, held)
        except BaseException:
            await self.remove(candidate.id)
            raise
        assert held.plan is not None
        logger.info(
            "homekit accessory paired",
            extra={"device": candidate.id, "seconds": round(time.monotonic() - started, 3)},
        )
        name = held.plan.info.get("name")
        return DeviceInfo(
            model=held.plan.model,
            firmware=held.plan.firmware,
            name=name if isinstance(name, str) else None,
        )

    async def _pair_setup(self, controller: Any, candidate: Candidate, setup_code: str) -> Any:
        """Run pair-setup, once more if the accessory refuses the code; return the pairing.

        An accessory whose SRP does not pad its values to the group's length (HAP-python is
        one) refuses the right code about once in a hundred pair-setups: the proof it computes
        differs whenever a value starts with a zero byte. A new pair-setup draws new values,
        so one more try hides it from the user. A wrong code costs two of the accessory's
        failed attempts (HAP allows 100; HAP-python pauses pair-setup for 60 s after 5 in a
        row), and whatever the second try meets, the answer is the refusal.
        """
        from aiohomekit import exceptions as hk  # noqa: PLC0415

        async def attempt() -> Any:
            async with asyncio.timeout(self._timeout):
                found = await controller.async_find(candidate.stable_id, self._timeout)
                finish = await found.async_start_pairing(candidate.id)
                return await finish(setup_code)

        try:
            return await attempt()
        except hk.AuthenticationError as refused:
            self._counters.inc("homekit.pair_setup_retried")
            try:
                return await attempt()
            except (hk.HomeKitException, TimeoutError, OSError):
                raise refused from None  # e.g. Busy: the refusal locked the accessory a while

    async def remove(self, device: str) -> bool:
        """Remove the pairing on the accessory and here; return whether the accessory confirmed."""
        held = self._held.get(device)
        released = False
        if held is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    pairing_id = held.pairing.pairing_data["iOSPairingId"]
                    released = bool(await held.pairing.remove_pairing(pairing_id))
            except Exception as exc:  # noqa: BLE001 - any failure leaves the accessory paired
                logger.warning(  # the accessory is gone or refused: forget it here anyway
                    "homekit pairing not removed on the accessory",
                    extra={"device": device, "reason": type(exc).__name__},
                )
        await self._release(device)
        self._stored.pop(device, None)
        await self._store.forget(device)
        self._counters.inc("homekit.released" if released else "homekit.forgotten")
        return released

    # --- connection upkeep (called by the transport at every poll interval) ---------------
    def keep_up(self, device: str) -> bool:
        """Return whether ``device``'s event connection is up; (re)connect it in the background."""
        held = self._held.get(device)
        if held is not None and held.plan is not None:
            return bool(held.pairing.is_available)
        if device in self._stored and device not in self._connecting:
            task = asyncio.create_task(self._reconnect(device), name=f"mdns-homekit-{device}")
            self._connecting[device] = task
            task.add_done_callback(lambda _: self._connecting.pop(device, None))
        return False

    def sighting(self, device: str) -> Sighting | None:
        """Return how the transport reports ``device`` alive, once a pairing is held."""
        held = self._held.get(device)
        return None if held is None else held.sighting

    async def _reconnect(self, device: str) -> None:
        data = self._stored[device]
        try:
            controller = await self._control()
            held = self._held.get(device)
            if held is None:
                pairing = controller.load_pairing(device, dict(data))
                held = self._held[device] = _Accessory(pairing, _sighting(None, data))
            async with asyncio.timeout(self._timeout):
                await self._attach(device, held)
        except (DeviceError, TimeoutError, OSError) as exc:
            reason = exc.reason if isinstance(exc, DeviceError) else "unreachable"
            self._registry.set_offline(device, DeviceError(reason, "no HomeKit connection"))
        except Exception as exc:  # noqa: BLE001 - aiohomekit's errors: retried next interval
            logger.debug("homekit reconnect failed", extra={"reason": type(exc).__name__})
        else:
            self._submit_now(device, {**_info_fields(held), **held.plan.initial}, online=True)  # type: ignore[union-attr]

    async def _attach(self, device: str, held: _Accessory) -> None:
        from aiohomekit import exceptions as hk  # noqa: PLC0415

        try:
            accessories = await held.pairing.list_accessories_and_characteristics()
        except hk.HomeKitException as exc:
            raise DeviceError("unreachable", f"accessory not read ({type(exc).__name__})") from exc
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            # aiohomekit's own reading of a malformed database (a key missing, a type that is
            # not a UUID, JSON that does not parse): the accessory's fault, not the hub's.
            raise DeviceError(
                "bad_shape", "the accessory database is not the documented shape"
            ) from exc
        held.plan = plan(accessories)
        try:
            held.undo = [
                held.pairing.dispatcher_connect(lambda event: self._on_event(device, event)),
                held.pairing.dispatcher_availability_changed(
                    lambda up: self._on_available(device, up)
                ),
            ]
            await held.pairing.subscribe(list(held.plan.collected))
        except hk.HomeKitException as exc:
            raise DeviceError("unreachable", f"accessory not read ({type(exc).__name__})") from exc

    async def _release(self, device: str) -> None:
        held = self._held.pop(device, None)
        if held is None:
            return
        for undo in held.undo:
            undo()
        if self._controller is not None:
            self._controller.aliases.pop(device, None)
        await held.pairing.close()

    async def _control(self) -> Any:
        if self._controller is None:
            from aiohomekit.characteristic_cache import CharacteristicCacheMemory  # noqa: PLC0415
            from aiohomekit.controller import Controller  # noqa: PLC0415

            controller = Controller(
                async_zeroconf_instance=self._azc, char_cache=CharacteristicCacheMemory()
            )
            await controller.async_start()
            self._controller = controller
        return self._controller

    # --- events (event loop) --------------------------------------------------------------
    def _on_event(self, device: str, event: dict[tuple[int, int], dict[str, Any]]) -> None:
        held = self._held.get(device)
        if held is None or held.plan is None:
            return
        fields = held.plan.fields_of(event)
        if fields:
            self._counters.inc("homekit.events")
            self._submit_now(device, fields)

    def _on_available(self, device: str, up: bool) -> None:
        held = self._held.get(device)
        if held is None or not self._registry.is_paired(device):
            return
        if up and self._announced(device):  # online: announced and connected
            self._registry.seen(held.sighting)
        else:
            self._registry.set_offline(device)

    def _on_device_event(self, event: DeviceEvent) -> None:
        if event.transport != MDNS:
            return
        held = self._held.get(event.device)
        if event.kind == PAIRED and held is not None and held.plan is not None:
            self._submit_now(event.device, {**_info_fields(held), **held.plan.initial}, True)
        elif event.kind == UNPAIRED and (held is not None or event.device in self._stored):
            # unpaired or erased by any path: release the accessory too (idempotent).
            task = asyncio.create_task(self.remove(event.device), name="mdns-homekit-remove")
            self._connecting[f"remove-{event.device}"] = task
            task.add_done_callback(lambda _: self._connecting.pop(f"remove-{event.device}", None))

    def _submit_now(self, device: str, fields: dict[str, Value], online: bool = False) -> None:
        if not self._registry.is_paired(device):
            return  # nothing is collected from a device that is not paired
        if online:
            fields = {**fields, "online": True}
        self._submit(Reading(device=device, driver=NAME, ts=time.time(), fields=fields))


def _info_fields(held: _Accessory) -> dict[str, Value]:
    return {} if held.plan is None else dict(held.plan.info)


def _sighting(stable_id: str | None, data: dict[str, object]) -> Sighting:
    host, port = data.get("AccessoryIP"), data.get("AccessoryPort")
    return Sighting(
        transport=MDNS,
        stable_id=stable_id or str(data.get(_STABLE_ID, "")).lower(),
        driver=NAME,
        address=f"{host}:{port}",
    )
