"""Retention: a periodic task destroys queued records whose time to live ran out.

Every record's ``expires`` is set when it is sealed (``[retention]`` TTL of its category);
this sweep deletes expired rows every ``sweep_interval_s`` and also on every broker
(re)connect, before the publisher starts sending, so records that expired during an outage
are destroyed, never forwarded. It counts them on ``health`` (``retention.expired``) and
writes one audit entry per sweep that destroyed something. While connected, a backlog older
than its TTL can be forwarded at most ``sweep_interval_s`` late.

The outbox decides expiry by the hub clock's lower bound of the true time (``HubClock.
lower_bound``, wired by the daemon; docs/clock.md): hub time once the wall clock was trusted
in this run, else the persisted floor plus the run's monotonic time. So a wall-clock jump, or
a boot at 1970, never destroys a record early; an untrusted clock can only make it late.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.audit.log import AuditLog
from gateway.counters import Counters
from gateway.errors import StorageUnavailableError
from gateway.outbox.store import Outbox
from gateway.storage.db import until_stored

logger = logging.getLogger(__name__)


class RetentionSweeper:
    """Destroys expired outbox records every ``interval_s`` seconds."""

    def __init__(
        self, outbox: Outbox, counters: Counters, audit: AuditLog, interval_s: float
    ) -> None:
        self._outbox = outbox
        self._counters = counters
        self._audit = audit
        self._interval = interval_s

    async def sweep(self) -> int:
        """Destroy expired records now; return how many."""
        try:
            removed = await self._outbox.expire()
        except StorageUnavailableError:  # reported on health; the next sweep tries again
            return 0
        if removed:
            self._counters.inc("retention.expired", removed)
            await until_stored(lambda: self._audit.append("retention.expire", records=removed))
            logger.info("expired records destroyed", extra={"records": removed})
        return removed

    async def on_connect(self, _connection: object) -> None:
        """Sweep before anything is published on a new broker connection (a link hook)."""
        await self.sweep()

    async def run(self) -> None:
        """Sweep at start-up, then every interval, forever."""
        while True:
            await self.sweep()
            await asyncio.sleep(self._interval)
