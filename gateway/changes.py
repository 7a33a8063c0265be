"""The one owner of acknowledged changes: what a ``consent/set``, ``try_now`` or ``restrict``
answer guarantees, in one fixed order.

1. The publisher is held back (it sends nothing more meanwhile, and the few statements below
   do not wait behind its batches).
2. The change is made in memory while no pipeline batch is between its gate and the outbox;
   open aggregate windows of what is withdrawn are dropped. From here on nothing withdrawn is
   collected or forwarded. A change that withdraws nothing may grant: the readings received
   before it are run through the gate first, under the consent they were received under, so
   none taken while consent was off is collected by the grant that follows.
3. If something is withdrawn: nothing handed to the MQTT client before can still reach the
   broker (the publisher's barrier).
4. One transaction: a tombstone per withdrawn category (the publisher honours it even if
   consent comes back at once, and across restarts), the new persisted state, the audit entry.
   Its commit is fsynced before the answer (gateway.storage.db), so a power cut right after
   the answer never undoes it.
5. The tombstoned rows are deleted after the answer, by the purger.

Storage fault: steps 1-3 hold in memory all the same; step 4 is kept and re-run (the state,
the tombstones and the audit entry, marked ``deferred``) as soon as storage takes writes
again; the answer says ``durable: false`` meanwhile (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.errors import StorageUnavailableError
from gateway.outbox.rows import Tombstone
from gateway.outbox.store import Outbox
from gateway.storage.db import StorageHealth, storage_health, transaction

logger = logging.getLogger(__name__)

RETRY_S: Final = 1.0


class Holding(Protocol):
    """What the owner needs of the publisher (gateway.outbox.publisher.Publisher)."""

    def paused(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold back new sends while the block runs."""
        ...

    async def barrier(self) -> None:
        """Return once nothing handed to the MQTT client earlier can still reach the broker."""
        ...


class Gate(Protocol):
    """What the owner needs of the pipeline (gateway.pipeline.Pipeline)."""

    def exclusive(self) -> asyncio.Lock:
        """The lock held while a batch goes from the consent gate to the outbox."""
        ...

    def forget_aggregates(self, device: str | None = None) -> None:
        """Drop open aggregate windows (of ``device``)."""
        ...

    async def settle(self) -> int:
        """Run the readings received so far under the consent in force now (lock held)."""
        ...


class Purging(Protocol):
    """What the owner needs of the purger (gateway.outbox.purger.Purger)."""

    def submit(self, stone: Tombstone) -> None:
        """Schedule the deletion of the rows ``stone`` covers."""
        ...


@dataclass(frozen=True, slots=True)
class Change:
    """One acknowledged change: made in memory by ``apply``, persisted by ``persist``.

    ``persist`` runs inside the durable transaction and must be idempotent (it writes the
    whole resulting state): after a storage fault it runs again when storage is back.
    """

    event: str
    apply: Callable[[], None]
    persist: Callable[[], Awaitable[None]]
    withdrawn: Sequence[str] = ()
    device: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class Changes:
    """Performs every acknowledged change in the module's order; retries what storage refused."""

    def __init__(
        self,
        *,
        db: aiosqlite.Connection,
        audit: AuditLog,
        outbox: Outbox,
        publisher: Holding,
        pipeline: Gate,
        purger: Purging,
    ) -> None:
        self._db = db
        self._audit = audit
        self._outbox = outbox
        self._publisher = publisher
        self._pipeline = pipeline
        self._purger = purger
        self._deferred: list[tuple[Change, list[Tombstone]]] = []
        self._wake = asyncio.Event()
        self.health: StorageHealth = storage_health(db)

    @property
    def pending(self) -> int:
        """Return how many changes hold in memory but are not durable yet."""
        return len(self._deferred)

    async def make(self, change: Change) -> bool:
        """Make ``change`` (steps 1-5); return True once it is durable, False if it holds in
        memory only and will be persisted when storage returns."""
        stones: list[Tombstone] = []
        async with self._publisher.paused():
            async with self._pipeline.exclusive():
                if not change.withdrawn:  # it may grant: what came before is judged before it
                    await self._pipeline.settle()
                change.apply()
                if change.withdrawn:  # readings summed under the old consent are not sent
                    self._pipeline.forget_aggregates(change.device)
            if change.withdrawn:
                await self._publisher.barrier()
            try:
                async with transaction(self._db):
                    for category in change.withdrawn:
                        stones.append(await self._outbox.tombstone(category, change.device))
                    await change.persist()
                    await self._audit.append(change.event, **change.details)
            except StorageUnavailableError:
                # tombstones already hold in memory and are written by the next commit
                self._deferred.append((change, stones))
                self._wake.set()
                logger.warning(
                    "change held in memory until storage returns",
                    extra={"audit_event": change.event},
                )
                return False
        for stone in stones:  # the large deletes only after the state is durable
            self._purger.submit(stone)
        return True

    async def run(self) -> None:
        """Persist the changes storage refused, in order, as soon as it takes writes again."""
        while True:
            await self._wake.wait()
            while self._deferred:
                with contextlib.suppress(StorageUnavailableError):
                    await self._persist_deferred()
                    continue
                await asyncio.sleep(RETRY_S)
            self._wake.clear()

    async def _persist_deferred(self) -> None:
        batch = list(self._deferred)
        async with transaction(self._db):
            await self._outbox.write_pending()
            for change, _ in batch:
                await change.persist()
                await self._audit.append(change.event, deferred=True, **change.details)
        del self._deferred[: len(batch)]
        logger.info("held changes made durable", extra={"changes": len(batch)})
        for _, stones in batch:
            for stone in stones:
                self._purger.submit(stone)
