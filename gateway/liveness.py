"""Liveness for the systemd watchdog: WATCHDOG=1 is sent only while the daemon really works.

Checked every half watchdog period: every loop of the daemon's task group is still running
(the pipeline, the MQTT link, the publisher, the registry's writer and sweeper, the BLE
scanner and online tracker, ...); the pipeline's commit lock can be taken (no batch is stuck
between the consent gate and the outbox) and the database answers, each within the period.
While any check fails the notification is withheld and the reason logged, so systemd restarts
a daemon that stays stuck for ``WatchdogSec``; a daemon whose broker is merely unreachable
keeps retrying and stays alive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

import aiosqlite

from gateway.systemd import notify

logger = logging.getLogger(__name__)


class Gated(Protocol):
    """The pipeline's gate lock (gateway.pipeline.Pipeline.exclusive)."""

    def exclusive(self) -> asyncio.Lock:
        """The lock held while a batch goes from the consent gate to the outbox."""
        ...


class Liveness:
    """Decides whether the daemon may pet the watchdog (see the module docstring)."""

    def __init__(
        self, pipeline: Gated, db: aiosqlite.Connection, loops: Mapping[str, asyncio.Task[None]]
    ) -> None:
        self._pipeline = pipeline
        self._db = db
        self._tasks = dict(loops)

    @property
    def watched(self) -> tuple[str, ...]:
        """Return the names of the tasks that must stay alive, sorted."""
        return tuple(sorted(self._tasks))

    async def problem(self, patience_s: float) -> str | None:
        """Return why the daemon is not alive, or None; each check may take ``patience_s``."""
        for name, task in self._tasks.items():
            if task.done():
                return f"loop {name} ended"
        try:
            async with asyncio.timeout(patience_s):
                async with self._pipeline.exclusive():
                    pass
        except TimeoutError:
            return "the pipeline is stuck between the consent gate and the outbox"
        try:
            async with asyncio.timeout(patience_s):
                async with self._db.execute("SELECT 1") as cursor:
                    await cursor.fetchone()
        except TimeoutError:
            return "the database does not answer"
        return None

    async def run(self, period: float) -> None:
        """Every ``period`` seconds: send WATCHDOG=1 if alive, else log why not."""
        while True:
            started = time.monotonic()
            problem = await self.problem(period)
            if problem is None:
                notify("WATCHDOG=1")
            else:
                logger.error("watchdog notification withheld", extra={"reason": problem})
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
