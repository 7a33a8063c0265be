"""The periodic task that signs audit checkpoints with the hub's Ed25519 key.

A checkpoint is written once ``every`` entries were appended since the last one, and at least
every ``interval_s`` seconds while anything new was appended; the first one right at start-up
covers whatever the previous run appended after its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.log import AuditLog
from gateway.storage.db import until_stored

logger = logging.getLogger(__name__)


class Checkpointer:
    """Signs checkpoints of ``log`` with ``key`` (see the module docstring for when)."""

    def __init__(
        self, log: AuditLog, key: Ed25519PrivateKey, *, every: int, interval_s: float
    ) -> None:
        self._log = log
        self._key = key
        self._every = every
        self._interval = interval_s

    async def run(self) -> None:
        """Write checkpoints forever."""
        log = self._log
        await until_stored(lambda: log.checkpoint(self._key))
        while True:
            log.appended.clear()
            if log.head <= log.checkpointed:
                await log.appended.wait()
                continue
            # Entries await signing: sign after `every` of them or `interval_s`, whichever first.
            deadline = time.monotonic() + self._interval
            while log.head - log.checkpointed < self._every:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                log.appended.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await log.appended.wait()
            await until_stored(lambda: log.checkpoint(self._key))
