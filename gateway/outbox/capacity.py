"""The outbox's bounds: the overflow policy (``gateway.outbox.overflow``, pure) applied to the
rows on disk and in memory, counted and audited.

``Capacity`` is the part of ``gateway.outbox.store.Outbox`` that keeps ``[outbox] max_rows``,
``max_bytes`` and, while storage is faulty, ``memory_rows``: what room a batch finds before it
is sealed (``room_for_new``, ``refuse``) and, for a batch that does not fit, which records go
(``make_room``: the oldest under ``drop_oldest``, the newest under ``reject_new``), one audit
entry per overflowing batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.config import OutboxConfig
from gateway.counters import Counters
from gateway.errors import StorageUnavailableError
from gateway.model import OutboxRow
from gateway.outbox import overflow, table
from gateway.outbox.memory import Unwritten
from gateway.storage.db import StorageHealth

logger = logging.getLogger(__name__)


class Capacity:
    """The bounds of an outbox; the store sets the state declared here."""

    _config: OutboxConfig
    _counters: Counters
    _audit: AuditLog
    _memory: Unwritten
    _box: aiosqlite.Connection
    health: StorageHealth
    rows: int
    bytes: int

    def room_for_new(self) -> int | None:
        """Return how many more records the outbox takes now: by ``memory_rows`` while
        storage is faulty, by the row bound under ``reject_new`` (0 once at either bound);
        None under ``drop_oldest`` with healthy storage, which always makes room."""
        limits = self._config
        if self.health.fault is not None:
            return max(0, limits.memory_rows - len(self._memory.rows))
        if limits.overflow != "reject_new":
            return None
        if self.bytes >= limits.max_bytes:
            return 0
        return max(0, limits.max_rows - self.rows)

    async def refuse(self, count: int) -> None:
        """Count (and audit, when storage can take it) ``count`` records refused before sealing
        (beyond ``room_for_new``)."""
        if self.health.fault is not None:
            self._counters.inc("dropped.storage_unavailable", count)
            return
        self._counters.inc("outbox.overflow_rejected", count)
        with contextlib.suppress(StorageUnavailableError):
            await self._audit_overflow("reject_new", count)

    async def make_room(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """Apply the overflow policy to ``rows`` (inside the caller's transaction); return
        the rows that are kept."""
        decision = overflow.decide(self._config, self.rows, self.bytes, rows)
        if decision.oldest:  # drop_oldest: the oldest records (never announcements) go
            victims = await table.oldest_records(self._box, decision.oldest)
            await self._delete_victims(victims)
            self._counters.inc("outbox.overflow_dropped", len(victims))
            await self._audit_overflow("drop_oldest", len(victims))
            return decision.kept
        if len(decision.kept) == len(rows) and decision.newest_rows <= 0:
            return decision.kept
        kept = decision.kept  # reject_new: what did not fit is refused, newest displaced
        evicted, still_rows, still_bytes = overflow.evict_from_batch(
            kept, decision.newest_rows, decision.newest_bytes
        )
        evicted += await self._evict_newest(still_rows, still_bytes)
        dropped = len(rows) - len(kept) + evicted
        self._counters.inc("outbox.overflow_rejected", dropped)
        await self._audit_overflow("reject_new", dropped)
        return kept

    async def _evict_newest(self, rows: int, size: int) -> int:
        """Delete records (never announcements) newest first from the table until ``rows`` rows
        and ``size`` bytes are freed; return how many."""
        if rows <= 0 and size <= 0:
            return 0
        victims = await table.newest_records(self._box, rows, size)
        await self._delete_victims(victims)
        return len(victims)

    async def _delete_victims(self, victims: list[tuple[int, int]]) -> None:
        """Delete the rows ``victims`` names as (id, payload size); keep the counts right."""
        await table.delete_ids(self._box, [v[0] for v in victims])
        self._memory.recent.clear()
        self.rows -= len(victims)
        self.bytes -= sum(v[1] for v in victims)

    async def _audit_overflow(self, policy: str, count: int) -> None:
        # One audit entry per overflowing batch, with the count: the log stays readable.
        logger.warning("outbox full", extra={"policy": policy, "records": count})
        await self._audit.append("outbox.overflow", policy=policy, records=count)
