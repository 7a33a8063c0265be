"""The epoch announcements the outbox keeps: the highest epoch ever announced and its hash
(the main database's meta table), the announcements themselves (kept so a consumer can ask
for them again), and the epochs that still have records queued.

``Announcements`` is the part of ``gateway.outbox.store.Outbox`` that reads them, and that
after a power cut between the two files' commits takes the epoch counter up to an
announcement already queued in ``outbox.db`` (docs/storage.md): epoch numbers only go up.
"""

from __future__ import annotations

from typing import Final

import aiosqlite

from gateway.envelope.format import announcement_hash
from gateway.outbox import table
from gateway.outbox.memory import Batch
from gateway.storage.db import get_meta, transaction

EPOCH_KEY: Final = "epoch"
PREV_KEY: Final = "epoch_prev_hash"


class Announcements:
    """Epoch announcements of an outbox; the store sets the state declared here."""

    _db: aiosqlite.Connection
    _box: aiosqlite.Connection

    async def last_epoch(self) -> tuple[int, bytes]:
        """Return the highest epoch ever announced and the hash of its announcement."""
        stored = await get_meta(self._db, EPOCH_KEY)
        prev = await get_meta(self._db, PREV_KEY)
        return (int(stored) if stored else 0), (prev or b"")

    async def catch_up_epoch(self) -> None:
        """An announcement's row commits before the main database's epoch counter (the two
        files commit one after the other): after a power cut between them, take the counter
        up to the queued announcement, so epoch numbers only go up."""
        queued = await table.newest_announcement(self._box)
        epoch, _ = await self.last_epoch()
        if queued is None or queued[0] <= epoch:
            return
        number, payload, created = queued
        async with transaction(self._db):
            await table.write_main(
                self._db,
                Batch(
                    meta={EPOCH_KEY: str(number).encode(), PREV_KEY: announcement_hash(payload)},
                    epochs={number: (payload, created)},
                ),
            )

    async def announcements(self, since_epoch: int = 0) -> list[tuple[int, bytes]]:
        """Return the stored announcements of epochs >= ``since_epoch``, oldest first."""
        return await table.announcements(self._db, since_epoch)

    async def oldest_epoch_queued(self) -> int | None:
        """Return the lowest epoch that still has records queued, or None."""
        return await table.oldest_epoch(self._box)
