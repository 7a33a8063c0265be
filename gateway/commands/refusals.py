"""Refused requests, counted and audited in aggregate so no client can grow the audit log.

Every refusal is counted on ``health`` (``commands.refused.<code>``, and
``commands.unknown`` for a command name the hub does not have: the name itself is never
logged nor audited). The audit log gets one ``command.rejected`` entry per client and
reason per minute: the first refusal of a quiet (client, reason) pair is audited at once, so
a single mistake is visible immediately; the ones that follow within the minute are counted
and audited as one entry (``repeated``) when the minute ends, and a pair that stays busy gets
one entry per minute from then on. A client is its MQTT 5 response topic (the only name a
requester has on a broker), audited as a keyed-hash pseudonym; past ``max_pairs`` distinct
pairs in one minute, further clients share the pair ``client: "<many>"``, so the entries per
minute are bounded whatever a client varies.

Nothing is written on a refusal's own path: entries are queued and written by ``run``, all the
entries due at once in one transaction of ``db`` (one commit, one fsync, for a flood's worth
of new pairs), and only while ``quiet`` is set, which the request intake clears while a
privacy-critical request waits or runs (``Router.quiet``): a withdrawal never queues for the
database behind the audit of other clients' refusals. "At once" is therefore within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiosqlite

from gateway.commands.router import Refusal
from gateway.counters import Counters
from gateway.errors import StorageError
from gateway.storage.db import transaction

WINDOW_S: Final = 60.0
MAX_PAIRS: Final = 32
MANY: Final = "<many>"

Pair = tuple[str | None, str, str | None]
"""(client pseudonym, error code, reason): one aggregation key."""


class AuditSink(Protocol):
    """The one audit-log call the aggregator needs."""

    def append(self, event: str, **details: Any) -> Awaitable[int]:
        """Append one entry."""
        ...


@dataclass(slots=True)
class _Window:
    opened: float
    repeated: int = 0


class RefusalAudit:
    """Counts every refused request and audits them per (client, reason) per minute."""

    def __init__(
        self,
        audit: AuditSink,
        counters: Counters,
        pseudonym: Callable[[str], str],
        *,
        window_s: float = WINDOW_S,
        max_pairs: int = MAX_PAIRS,
        clock: Callable[[], float] = time.monotonic,
        db: aiosqlite.Connection | None = None,
        quiet: asyncio.Event | None = None,
    ) -> None:
        self._audit = audit
        self._counters = counters
        self._pseudonym = pseudonym
        self._window_s = window_s
        self._max_pairs = max_pairs
        self._clock = clock
        self._open: dict[Pair, _Window] = {}
        self._db = db
        self._quiet = quiet
        self._due: list[dict[str, Any]] = []  # entries waiting for ``run`` to write them
        self._wake = asyncio.Event()

    async def on_refused(self, refusal: Refusal) -> None:
        """Count ``refusal``; queue its audit entry if its pair is quiet, else count it for the
        minute's end."""
        code = refusal.error.code
        self._counters.inc(f"commands.refused.{code}", refusal.count)
        if refusal.command is None:
            self._counters.inc("commands.unknown", refusal.count)
        client = self._pseudonym(refusal.client) if refusal.client else None
        reason = refusal.error.message[:200] if code == "unauthorized" else None
        pair: Pair = (client, code, reason)
        if pair not in self._open and len(self._open) >= self._max_pairs:
            pair = (MANY, code, None)
        window = self._open.get(pair)
        if window is not None:
            window.repeated += refusal.count
            return
        self._open[pair] = _Window(self._clock(), refusal.count - 1)
        details: dict[str, Any] = {"command": refusal.command or "<unknown>", "code": code}
        if client is not None:
            details["client"] = client
        if reason is not None:
            details["reason"] = reason
        self._due.append(details)
        self._wake.set()

    async def flush(self, *, everything: bool = False) -> int:
        """Write the queued entries and those of the pairs whose minute ended (or of all with
        ``everything``); return how many entries were written."""
        now = self._clock()
        written = 0
        for pair, window in list(self._open.items()):
            if not everything and now - window.opened < self._window_s:
                continue
            if window.repeated == 0:  # quiet for a whole minute: the next one is audited at once
                del self._open[pair]
                continue
            client, code, reason = pair
            details: dict[str, Any] = {"code": code, "repeated": window.repeated}
            details["window_s"] = round(now - window.opened, 1)
            if client is not None:
                details["client"] = client
            if reason is not None:
                details["reason"] = reason
            # the pair stays open: a client that keeps failing gets one entry per minute
            self._open[pair] = _Window(now)
            if everything:
                del self._open[pair]
            self._due.append(details)
        if not self._due:
            return written
        if self._quiet is not None:
            await self._quiet.wait()
        entries, self._due = self._due, []
        try:
            batch = transaction(self._db) if self._db is not None else contextlib.nullcontext()
            async with batch:
                for details in entries:
                    await self._audit.append("command.rejected", **details)
                    written += 1
        except StorageError:  # storage is down: counted, the refusals were answered all the same
            self._counters.inc("commands.refusals_unaudited", len(entries))
            return 0
        return written

    async def run(self, period_s: float = 1.0) -> None:
        """Write queued entries (at most ``period_s`` after their refusal) and ended minutes
        until cancelled (what the last minute counted after its first entry is then only on
        ``health``: the stop must not wait for storage)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()
