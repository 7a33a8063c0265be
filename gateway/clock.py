"""The hub's time on a machine without a real-time clock (see docs/clock.md).

A Raspberry Pi boots at 1970 (or at the time fake-hwclock saved) and its wall clock jumps when
NTP synchronises. ``HubClock`` owns two answers:

- **Is the wall clock trusted?** Only if a time-sync source says it is synchronised (the
  kernel's ``adjtimex`` status without ``STA_UNSYNC``, or systemd-timesyncd's
  ``/run/systemd/timesync/synchronized``) and it is not earlier than a persisted floor (the
  build date, raised to the newest trusted time the hub has seen). On a machine that runs no
  time-sync service at all (a container, a VM whose host keeps time) the floor alone decides,
  unless ``[clock] require_sync = "yes"``.
- **What time is it for the hub?** From the first moment the wall clock is trusted in a run
  (the *anchor*), hub time is the anchor plus monotonic time elapsed: it never jumps. Small
  corrections of the wall clock (up to ``FOLLOW_S``) are followed; a larger step after the
  anchor is reported (logged once, ``clock: unsynced`` on health) and not followed until the
  next start. Before the anchor, ``now()`` is an estimate (the wall clock, but never earlier
  than the floor plus the run's monotonic time) and ``lower_bound()`` is the floor plus the
  run's monotonic time: a time the true time is certainly past, which is what retention uses.

Durations the hub enforces itself use ``time.monotonic()`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiosqlite

from gateway.errors import StorageUnavailableError
from gateway.storage.db import get_meta, set_meta, transaction

logger = logging.getLogger(__name__)

# No trusted time can be earlier than this release's build date (2026-01-01T00:00:00Z).
BUILD_FLOOR: Final = 1_767_225_600.0
FLOOR_KEY: Final = "clock.floor"
# Wall-clock corrections up to this size are followed after the anchor (NTP slews and small
# steps); larger steps are jumps, reported and not followed within the run.
FOLLOW_S: Final = 300.0
CHECK_INTERVAL_S: Final = 1.0
# A change of (wall - monotonic) beyond this between checks is a step of the wall clock.
STEP_S: Final = 1.0
_MAX_STRETCHES: Final = 16
# The floor is persisted at the anchor, then at most this often (SD-card wear) and at the stop.
FLOOR_SAVE_S: Final = 600.0
SYNCED: Final = "synced"
UNSYNCED: Final = "unsynced"
REQUIRE_SYNC: Final = ("auto", "yes", "no")

# adjtimex(2): modes 0 reads the state; STA_UNSYNC in status means "clock not synchronised".
_STA_UNSYNC: Final = 0x0040
_SYSTEMD_SYNCED: Final = Path("/run/systemd/timesync/synchronized")
# Where a time-sync service leaves a trace while it runs (timesyncd, chrony, ntpd).
_SYNC_SERVICES: Final = (
    Path("/run/systemd/timesync"),
    Path("/run/chrony"),
    Path("/run/chronyd.pid"),
    Path("/run/ntpd.pid"),
)


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> up to status, then padding for the rest (it is 208 bytes
    # on 64-bit Linux); only status is read.
    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    )


def kernel_synced() -> bool | None:
    """Return whether the kernel says the clock is synchronised (None if it cannot be asked,
    e.g. under systemd's ProtectClock= seccomp filter)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = _Timex()
        if libc.adjtimex(ctypes.byref(timex)) < 0:
            return None
    except (OSError, AttributeError):
        return None
    return not timex.status & _STA_UNSYNC


def sync_source(
    kernel: Callable[[], bool | None] = kernel_synced,
    marker: Path = _SYSTEMD_SYNCED,
    services: tuple[Path, ...] = _SYNC_SERVICES,
) -> tuple[bool, bool]:
    """Return (synchronised, a time-sync service runs here) from the kernel and systemd."""
    if marker.exists():
        return True, True
    present = any(path.exists() for path in services)
    return kernel() is True, present


@dataclass(frozen=True, slots=True)
class ClockState:
    """What the hub knows of its wall clock at one check (shown on health)."""

    synced: bool
    anchored: bool
    offset_s: float  # hub time minus wall clock (0 while they agree)

    @property
    def label(self) -> str:
        """Return ``synced`` or ``unsynced`` (the health field ``clock``)."""
        return SYNCED if self.synced else UNSYNCED


class HubClock:
    """The hub's time and whether its wall clock is trusted (see the module docstring)."""

    def __init__(
        self,
        *,
        require_sync: str = "auto",
        floor: float = BUILD_FLOOR,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        source: Callable[[], tuple[bool, bool]] = sync_source,
    ) -> None:
        if require_sync not in REQUIRE_SYNC:
            raise ValueError(f"require_sync {require_sync!r} is not one of {REQUIRE_SYNC}")
        self._require = require_sync
        self._wall = wall
        self._mono = mono
        self._source = source
        self._floor = floor
        self._start_mono = mono()
        self._anchor: tuple[float, float] | None = None  # (wall, mono) at the last agreement
        self._anchored_since: float | None = None
        # wall minus monotonic of each stretch between steps of the wall clock (newest last)
        self._offsets: list[float] = []
        self._jumped = False
        self._synced = False
        self._saved_at: float | None = None
        self._checked = False
        self.changes = 0

    @property
    def anchored(self) -> bool:
        """Return whether hub time is anchored on a trusted wall clock in this run."""
        return self._anchor is not None

    @property
    def anchored_since(self) -> float | None:
        """Return the monotonic time of the first anchor in this run (None before it)."""
        return self._anchored_since

    @property
    def synced(self) -> bool:
        """Return whether the wall clock is trusted now and agrees with hub time."""
        return self._synced

    @property
    def floor(self) -> float:
        """Return the time the true time is known to be past (persisted across starts)."""
        return self._floor

    def state(self) -> ClockState:
        """Return the clock's state for health."""
        return ClockState(self._synced, self.anchored, round(self.now() - self._wall(), 3))

    def now(self) -> float:
        """Return hub time in unix seconds (continuous within a run once anchored)."""
        anchor = self._anchor
        if anchor is not None:
            return anchor[0] + (self._mono() - anchor[1])
        return max(self._wall(), self.lower_bound())

    def lower_bound(self) -> float:
        """Return a unix time the true time is certainly past (what retention expires by)."""
        anchor = self._anchor
        if anchor is not None:
            return anchor[0] + (self._mono() - anchor[1])
        return self._floor + (self._mono() - self._start_mono)

    def true_time_at(self, mono: float) -> float | None:
        """Return the hub time at monotonic instant ``mono``, or None before the anchor."""
        anchor = self._anchor
        return None if anchor is None else anchor[0] + (mono - anchor[1])

    def rebase(self, ts: float, mono_now: float) -> float:
        """Return ``ts``, a time read from the wall clock at most a run ago, in hub time:
        the wall-clock stretch it was read in is the one that puts its monotonic read time
        within this run (``ts`` as is before the anchor)."""
        anchor = self._anchor
        if anchor is None:
            return ts
        true_offset = anchor[0] - anchor[1]
        for offset in reversed(self._offsets):
            if self._start_mono - FOLLOW_S <= ts - offset <= mono_now + FOLLOW_S:
                return ts + (true_offset - offset)
        return ts + (true_offset - (self._wall() - mono_now))

    def check(self) -> bool:
        """Read the wall clock and sync sources; update trust; return whether it changed (the
        first check logs ``clock unsynced`` when the clock starts untrusted)."""
        wall, mono = self._wall(), self._mono()
        offsets = self._offsets
        if not offsets or abs(wall - mono - offsets[-1]) > STEP_S:
            offsets.append(wall - mono)
            del offsets[:-_MAX_STRETCHES]
        synced, service = self._source()
        sync_ok = synced or (self._require == "no") or (self._require == "auto" and not service)
        trusted_wall = sync_ok and wall >= self._floor
        before = self._synced
        if self._anchor is None:
            if trusted_wall:
                self._anchor = (wall, mono)
                self._anchored_since = mono
                logger.info("wall clock trusted: hub time anchored")
            self._synced = trusted_wall
        else:
            hub = self._anchor[0] + (mono - self._anchor[1])
            agrees = abs(wall - hub) <= FOLLOW_S
            if trusted_wall and agrees:
                self._anchor = (wall, mono)
                self._jumped = False
            elif not agrees and not self._jumped:
                self._jumped = True
                logger.warning(
                    "wall clock stepped away from hub time: not followed until the next start",
                    extra={"step_s": round(wall - hub, 1)},
                )
            self._synced = trusted_wall and agrees
        if self._anchor is not None:
            self._floor = max(self._floor, self.now())
        first, self._checked = not self._checked, True
        if self._synced != before:
            self.changes += 1
            logger.info("clock %s", SYNCED if self._synced else UNSYNCED)
            return True
        if first:  # untrusted from the start: said once at boot
            logger.info("clock %s", UNSYNCED)
        return False

    async def load(self, db: aiosqlite.Connection) -> None:
        """Raise the floor to the newest trusted time a previous run persisted."""
        stored = await get_meta(db, FLOOR_KEY)
        if stored:
            with contextlib.suppress(ValueError):
                self._floor = max(self._floor, float(stored.decode()))

    async def save(self, db: aiosqlite.Connection) -> None:
        """Persist the floor (only a time the hub trusted: nothing before the anchor)."""
        if self._anchor is None:
            return
        async with transaction(db):
            await set_meta(db, FLOOR_KEY, repr(self._floor).encode())
        self._saved_at = self._mono()

    async def run(self, db: aiosqlite.Connection) -> None:
        """Check the clock every second forever; persist the floor at the anchor and every
        ``FLOOR_SAVE_S``."""
        while True:
            self.check()
            due = self._saved_at is None or self._mono() - self._saved_at >= FLOOR_SAVE_S
            if self._anchor is not None and due:
                with contextlib.suppress(StorageUnavailableError):  # retried at the next check
                    await self.save(db)
            await asyncio.sleep(CHECK_INTERVAL_S)
