"""Deletes the rows that withdrawals, unpairing and erasure killed, after they were acknowledged.

A withdrawal is acknowledged as soon as its tombstone is durable (the publisher skips covered
rows from then on); deleting tens of thousands of rows takes longer, so it happens here. The
tombstones waiting at one moment (a Try Now switch writes one per category) are purged
together: one commit of ``outbox.db`` deletes their rows, then one commit of the main database
removes the tombstones with an audit entry each holding its count, counted on ``health``.
"""

from __future__ import annotations

import asyncio
import logging

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.counters import Counters
from gateway.outbox.rows import Tombstone
from gateway.outbox.store import Outbox
from gateway.storage.db import transaction, until_stored

logger = logging.getLogger(__name__)


class Purger:
    """Works through tombstones in the order they were written."""

    def __init__(
        self, db: aiosqlite.Connection, outbox: Outbox, counters: Counters, audit: AuditLog
    ) -> None:
        self._db = db
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
        """Purge tombstones forever, those waiting together in one transaction."""
        while True:
            stones = [await self._queue.get()]
            while not self._queue.empty():
                stones.append(self._queue.get_nowait())
            try:
                removed = await until_stored(lambda: self._purge(stones))  # noqa: B023
                for stone, count in zip(stones, removed, strict=True):
                    self._counters.inc(f"purged.{stone.category}", count)
                    logger.info("purged", extra={"category": stone.category, "records": count})
            finally:
                for _ in stones:
                    self._queue.task_done()

    async def _purge(self, stones: list[Tombstone]) -> list[int]:
        # one commit of outbox.db deletes every stone's rows; then one commit of the main
        # database removes the tombstones and audits the counts (after a power cut between
        # the two, the tombstones are purged again at start-up and find nothing)
        async with transaction(self._db):
            async with transaction(self._outbox.box):
                removed = [await self._outbox.purge(stone) for stone in stones]
            for stone, count in zip(stones, removed, strict=True):
                await self._audit.append(
                    "outbox.purge", category=stone.category, device=stone.device, records=count
                )
        return removed
