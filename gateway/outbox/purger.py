"""Deletes the rows that withdrawals, unpairing and erasure killed, after they were acknowledged.

A withdrawal is acknowledged as soon as its tombstone is durable (the publisher skips covered
rows from then on); deleting tens of thousands of rows takes longer, so it happens here, one
tombstone at a time, counted on ``health`` and written to the audit log with its count.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.audit.log import AuditLog
from gateway.counters import Counters
from gateway.outbox.store import Outbox, Tombstone
from gateway.storage.db import until_stored

logger = logging.getLogger(__name__)


class Purger:
    """Works through tombstones in the order they were written."""

    def __init__(self, outbox: Outbox, counters: Counters, audit: AuditLog) -> None:
        self._outbox = outbox
        self._counters = counters
        self._audit = audit
        self._queue: asyncio.Queue[Tombstone] = asyncio.Queue()
        for stone in outbox.tombstones:  # left over from before a restart
            self._queue.put_nowait(stone)

    def submit(self, stone: Tombstone) -> None:
        """Schedule the physical deletion of the rows ``stone`` covers."""
        self._queue.put_nowait(stone)

    async def settled(self) -> None:
        """Return once every submitted tombstone is purged."""
        await self._queue.join()

    async def run(self) -> None:
        """Purge tombstones forever."""
        while True:
            stone = await self._queue.get()
            try:
                removed = await until_stored(lambda: self._outbox.purge(stone))  # noqa: B023
                self._counters.inc(f"purged.{stone.category}", removed)
                await until_stored(
                    lambda: self._audit.append(
                        "outbox.purge",
                        category=stone.category,  # noqa: B023 - awaited in this iteration
                        device=stone.device,  # noqa: B023
                        records=removed,  # noqa: B023
                    )
                )
                logger.info("purged", extra={"category": stone.category, "records": removed})
            finally:
                self._queue.task_done()
