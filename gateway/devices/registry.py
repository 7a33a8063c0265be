"""The device registry shared by every transport: candidates, pairing, online status.

Transports report what they see (``seen``, ``set_offline``, ``update``); the registry decides
what is a candidate (discovered, never collected from) and what is paired, pairs candidates
inside a ``permit_join`` window or on an explicit ``pair``, persists paired devices, tracks
online status and tells listeners about every change. It logs pseudonyms only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Final, Self

import aiosqlite

from gateway.consent.catalogue import DEVICE_NETWORK, ON
from gateway.consent.policy import ConsentPolicy
from gateway.devices import model as kinds
from gateway.devices.entry import Entry, stale
from gateway.devices.model import TRANSPORTS, DeviceEvent, DeviceView, Pairer, Sighting
from gateway.devices.store import DeviceStore, StoredDevice, Writer
from gateway.errors import CommandError, DeviceError, StorageError
from gateway.pseudonym import Pseudonymizer

logger = logging.getLogger(__name__)

Listener = Callable[[DeviceEvent], None]
EraseHook = Callable[[str], Awaitable[None]]
MAX_JOIN_S: Final = 3600.0
_MAX_CACHED_IDS: Final = 4096


class DeviceRegistry:
    """Candidates and paired devices of every transport; an async context manager.

    ``offline_after`` maps a transport to the seconds without a sighting after which its
    devices count as offline; ``on_erase(device_id)`` runs after ``unpair`` deleted the row
    (the place to purge the outbox and consent overrides).
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        pseudonyms: Pseudonymizer,
        policy: ConsentPolicy,
        *,
        offline_after: Mapping[str, float] | None = None,
        on_erase: EraseHook | None = None,
        pair_timeout_s: float = 30.0,
        pair_retry_s: float = 5.0,
        max_candidates: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = DeviceStore(db)
        self._pseudonyms = pseudonyms
        self._policy = policy
        self._offline_after = dict(offline_after or {})
        self._on_erase = on_erase
        self._pair_timeout = pair_timeout_s
        self._pair_retry = pair_retry_s
        self._max_candidates = max_candidates
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._ids: dict[str, str] = {}  # stable id -> pseudonym (HMAC), for busy transports
        self._pairers: dict[str, Pairer] = {}
        self._listeners: list[Listener] = []
        self._windows: dict[str, float] = {}  # transport -> monotonic end of permit-join
        self._pairing: dict[str, asyncio.Task[DeviceView]] = {}
        self._writer = Writer(self._store, self._stored)

    # --- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self._store.create()
        for stored in await self._store.load():
            self._entries[stored.id] = Entry.from_stored(stored)
        return self

    def loops(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """Return the registry's long-lived loops, for the daemon's task group to run."""
        return {"devices-writer": self._writer.run, "devices-sweeper": self._sweep_loop}

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = list(self._pairing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Persist last_seen of every paired device once, at shutdown, not on every sighting.
        for entry in self._entries.values():
            self._writer.mark(entry.id)
        await self._writer.flush()

    # --- wiring ---------------------------------------------------------------------------
    def pseudonym(self, stable_id: str) -> str:
        """Return the pseudonym of the device whose stable id is ``stable_id``."""
        cached = self._ids.get(stable_id)
        if cached is None:
            if len(self._ids) >= _MAX_CACHED_IDS:
                self._ids.clear()
            cached = self._ids[stable_id] = self._pseudonyms.device(stable_id)
        return cached

    def add_pairer(self, transport: str, pairer: Pairer) -> Callable[[], None]:
        """Use ``pairer`` to read the info of ``transport`` candidates; return an undo function."""
        self._pairers[transport] = pairer

        def remove() -> None:
            if self._pairers.get(transport) is pairer:
                del self._pairers[transport]

        return remove

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` after every change; return a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- what transports report -----------------------------------------------------------
    def seen(self, sighting: Sighting) -> str:
        """Record that a device is alive (an announcement or a good poll); return its pseudonym."""
        device_id = self.pseudonym(sighting.stable_id)
        entry = self._entries.get(device_id)
        now, mono = self._clock(), time.monotonic()
        if entry is None:
            if sum(not e.paired for e in self._entries.values()) >= self._max_candidates:
                logger.debug("candidate ignored: list full", extra={"device": device_id})
                return device_id
            entry = Entry.from_sighting(device_id, sighting, now, mono)
            self._entries[device_id] = entry
            logger.info(
                "device discovered", extra={"device": device_id, "transport": entry.transport}
            )
            self._emit(kinds.CANDIDATE, entry)
            self._maybe_auto_pair(entry)
            return device_id
        entry.address = sighting.address
        entry.last_seen, entry.mono_seen = now, mono
        changed = entry.apply_sighting(sighting)
        if changed and entry.paired:
            logger.info("device info changed", extra={"device": device_id, "what": changed})
        if not entry.online or entry.error is not None:
            entry.online, entry.error = True, None
            logger.info("device online", extra={"device": device_id, "transport": entry.transport})
            self._writer.mark(entry.id)
            self._emit(kinds.ONLINE, entry)
        if changed:
            self._writer.mark(entry.id)
            self._emit(kinds.UPDATED, entry)
        self._maybe_auto_pair(entry)
        return device_id

    def set_offline(self, device_id: str, error: DeviceError | None = None) -> bool:
        """Mark a device offline (errored when ``error``); return whether its state changed."""
        entry = self._entries.get(device_id)
        if entry is None:
            return False
        reason = None if error is None else error.reason
        if not entry.online and entry.error == reason:
            return False
        entry.online, entry.error = False, reason
        extra = {"device": device_id, "transport": entry.transport}
        if error is None:
            logger.info("device offline", extra=extra)
        else:
            logger.warning(
                "device errored", extra={**extra, "reason": reason, "detail": str(error)}
            )
        self._writer.mark(entry.id)
        self._emit(kinds.OFFLINE, entry)
        if not entry.paired and error is None:
            self._forget(entry)
        return True

    def update(
        self,
        device_id: str,
        *,
        firmware: str | None = None,
        update_available: bool | None = None,
        update_version: str | None = None,
    ) -> None:
        """Store changed device info (firmware, upgrade info) reported by a transport."""
        entry = self._entries.get(device_id)
        if entry is None:
            return
        changed = entry.apply_update(firmware, update_available, update_version)
        if changed:
            if entry.paired:
                logger.info("device info changed", extra={"device": device_id, "what": changed})
            self._writer.mark(entry.id)
            self._emit(kinds.UPDATED, entry)

    # --- pairing --------------------------------------------------------------------------
    def permit_join(self, duration_s: float, transport: str | None = None) -> float:
        """Open (0: close) the pairing window of ``transport`` (None: all); return when it ends."""
        transports = TRANSPORTS if transport is None else (transport,)
        mono = time.monotonic()
        for t in transports:
            if duration_s > 0:
                self._windows[t] = mono + duration_s
            else:
                self._windows.pop(t, None)
        logger.info("permit join", extra={"transport": transport or "all", "duration": duration_s})
        for entry in list(self._entries.values()):
            self._maybe_auto_pair(entry)
        return self._clock() + max(duration_s, 0.0)

    def joining(self, transport: str) -> bool:
        """Return whether the permit-join window of ``transport`` is open now."""
        return time.monotonic() < self._windows.get(transport, 0.0)

    async def pair(self, device_id: str) -> DeviceView:
        """Pair candidate ``device_id`` (reads its info); CommandError(not_found), DeviceError."""
        entry = self._known(device_id)
        if entry.paired:
            return entry.view()
        task = self._pairing.get(device_id) or self._start_pairing(entry)
        return await asyncio.shield(task)

    async def unpair(self, device_id: str) -> None:
        """End collection for ``device_id`` and erase its data; CommandError if not paired."""
        entry = self._entries.get(device_id)
        if entry is None or not entry.paired:
            raise CommandError("not_found", f"no paired device {device_id!r}")
        # Collection stops first: is_paired() is false from here on.
        entry.paired = False
        del self._entries[device_id]
        self._writer.discard(device_id)
        await self._store.delete(device_id)
        if self._on_erase is not None:
            await self._on_erase(device_id)
        logger.info("device unpaired", extra={"device": device_id, "transport": entry.transport})
        self._emit(kinds.UNPAIRED, entry)

    async def rename(self, device_id: str, name: str) -> DeviceView:
        """Give ``device_id`` a display name (persisted when paired); CommandError(not_found)."""
        entry = self._known(device_id)
        entry.name, entry.user_named = name, True
        if entry.paired:
            await self._store.save(entry.stored())
        self._emit(kinds.UPDATED, entry)
        return entry.view()

    def _start_pairing(self, entry: Entry) -> asyncio.Task[DeviceView]:
        task = asyncio.create_task(self._pair(entry.id), name=f"pair-{entry.id}")
        self._pairing[entry.id] = task
        task.add_done_callback(self._on_pair_done)
        return task

    def _on_pair_done(self, task: asyncio.Task[DeviceView]) -> None:
        self._pairing = {k: t for k, t in self._pairing.items() if t is not task}
        if not task.cancelled():
            task.exception()  # retrieved here: auto-pair failures are logged in _pair

    def _maybe_auto_pair(self, entry: Entry) -> None:
        if (
            entry.paired
            or entry.id in self._pairing
            or entry.transport not in self._pairers
            or not self.joining(entry.transport)
            or time.monotonic() < entry.retry_at
            or not _auto_pairs(self._pairers[entry.transport], entry)
        ):
            return
        self._start_pairing(entry)

    async def _pair(self, device_id: str) -> DeviceView:
        entry = self._known(device_id)
        pairer = self._pairers.get(entry.transport)
        if pairer is None:
            raise DeviceError("unsupported", f"no pairer for transport {entry.transport!r}")
        try:
            async with asyncio.timeout(self._pair_timeout):
                info = await pairer.read_info(entry.candidate())
        except TimeoutError as exc:
            self._pair_failed(entry, DeviceError("timeout", "pairing timed out"))
            raise DeviceError("timeout", "pairing timed out") from exc
        except DeviceError as exc:
            self._pair_failed(entry, exc)
            raise
        if self._entries.get(device_id) is not entry:
            raise DeviceError("lost", "the device went away while pairing")
        entry.pair(info, self._clock(), time.monotonic())
        try:
            await self._store.save(entry.stored())
        except StorageError:
            entry.paired = False
            raise
        logger.info("device paired", extra={"device": device_id, "transport": entry.transport})
        self._emit(kinds.PAIRED, entry)
        return entry.view()

    def _pair_failed(self, entry: Entry, error: DeviceError) -> None:
        entry.error = error.reason
        entry.retry_at = time.monotonic() + self._pair_retry
        logger.warning(
            "pairing failed",
            extra={"device": entry.id, "reason": error.reason, "detail": str(error)},
        )
        self._emit(kinds.UPDATED, entry)

    # --- reading --------------------------------------------------------------------------
    def is_paired(self, device_id: str) -> bool:
        """Return whether ``device_id`` is paired (collection allowed) right now."""
        entry = self._entries.get(device_id)
        return entry is not None and entry.paired

    def get(self, device_id: str) -> DeviceView | None:
        """Return the snapshot of ``device_id``, or None if unknown."""
        entry = self._entries.get(device_id)
        return None if entry is None else entry.view()

    def views(self) -> list[DeviceView]:
        """Return snapshots of every known device (paired and candidates), sorted by id."""
        return [self._entries[k].view() for k in sorted(self._entries)]

    def paired_ids(self, transport: str | None = None) -> frozenset[str]:
        """Return the pseudonyms of paired devices (of ``transport`` when given)."""
        return frozenset(
            e.id
            for e in self._entries.values()
            if e.paired and (transport is None or e.transport == transport)
        )

    def to_json(self, view: DeviceView) -> dict[str, object]:
        """Return the API entry of ``view``: ``mac`` only while ``network`` consent allows it."""
        return view.to_json(show_mac=self._policy.decide(view.id, DEVICE_NETWORK) == ON)

    def devices(self) -> dict[str, list[dict[str, object]]]:
        """Return ``{"paired": [...], "candidates": [...]}`` as the ``devices`` command answers."""
        views = self.views()
        return {
            "paired": [self.to_json(v) for v in views if v.paired],
            "candidates": [self.to_json(v) for v in views if not v.paired],
        }

    def counts(self) -> dict[str, int]:
        """Return how many devices are paired, paired and online, and candidates (for health)."""
        entries = self._entries.values()
        return {
            "paired": sum(e.paired for e in entries),
            "online": sum(e.paired and e.online for e in entries),
            "candidates": sum(not e.paired for e in entries),
        }

    # --- internals ------------------------------------------------------------------------
    def _known(self, device_id: str) -> Entry:
        entry = self._entries.get(device_id)
        if entry is None:
            raise CommandError("not_found", f"no device {device_id!r}")
        return entry

    def _forget(self, entry: Entry) -> None:
        if self._entries.get(entry.id) is entry and not entry.paired:
            del self._entries[entry.id]
            self._emit(kinds.LOST, entry)

    def _emit(self, kind: str, entry: Entry) -> None:
        event = DeviceEvent(
            kind=kind, device=entry.id, transport=entry.transport, error=entry.error
        )
        for listener in list(self._listeners):
            listener(event)

    def _stored(self, device_id: str) -> StoredDevice | None:
        entry = self._entries.get(device_id)
        return entry.stored() if entry is not None and entry.paired else None

    async def _sweep_loop(self) -> None:
        if not self._offline_after:
            return
        interval = min(max(min(self._offline_after.values()) / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> None:
        """Mark devices unseen for their transport's ``offline_after`` as offline (periodic)."""
        silent, forgotten = stale(self._entries.values(), self._offline_after, time.monotonic())
        for entry in silent:
            self.set_offline(entry.id)
        for entry in forgotten:
            self._forget(entry)


def _auto_pairs(pairer: Pairer, entry: Entry) -> bool:
    """Return whether a window may pair ``entry`` (a pairer may say no: explicit consent only)."""
    auto_pairs = getattr(pairer, "auto_pairs", None)
    return auto_pairs is None or bool(auto_pairs(entry.candidate()))
