"""Real hubs for fleet runs: ``python -m gateway run`` daemons with simulated devices.

``RealHubs`` starts a few daemons (``bench.fault_proc.DaemonProcess``, as systemd runs them) on
the fleet's broker, all sealing for the fleet's one recipient key, and an observer connection
that subscribes to their data topics before they start: what the broker accepted from each hub
(distinct payloads, so the hub's QoS 1 redeliveries count once) is the hub's sent count that
the sink's rows are checked against. A graceful stop (SIGTERM) drains each daemon's outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Self

import aiomqtt

from bench.fault_proc import DaemonProcess, DaemonSpec
from gateway.envelope.keys import hub_signing_key, raw_public

BASE = "consentgate"  # the daemons' default mqtt.base_topic


class RealHubs:
    """A few hub daemons on one broker and the count of distinct records each one sent."""

    def __init__(
        self, workdir: Path, port: int, recipient_dir: Path, count: int, devices: int, rate: float
    ) -> None:
        self.port = port
        self.daemons: list[DaemonProcess] = []
        self.seen: dict[str, set[bytes]] = {}
        self._ready = asyncio.Event()
        self._observer: asyncio.Task[None] | None = None
        for i in range(count):
            hub_dir = workdir / f"daemon-{i}"
            (hub_dir / "recipient").mkdir(parents=True, exist_ok=True)
            for name in ("recipient.key", "recipient.pub"):
                shutil.copy(recipient_dir / name, hub_dir / "recipient" / name)
            spec = DaemonSpec(f"daemon-{i:03d}", hub_dir, port, devices=devices, rate_hz=rate)
            self.daemons.append(DaemonProcess(spec))
            self.seen[spec.hub_id] = set()

    def trust(self) -> list[str]:
        """Return the ``--trust HUB_ID=PUBHEX`` arguments of every daemon (keys made now)."""
        out = []
        for daemon in self.daemons:
            key = hub_signing_key(daemon.spec.state_dir)
            out += ["--trust", f"{daemon.spec.hub_id}={raw_public(key.public_key()).hex()}"]
        return out

    async def __aenter__(self) -> Self:
        """Subscribe the observer, then start every daemon and wait for its READY=1."""
        self._observer = asyncio.create_task(self._observe(), name="fleet-observer")
        async with asyncio.timeout(10):
            await self._ready.wait()
        for daemon in self.daemons:
            daemon.start()
        for daemon in self.daemons:
            await asyncio.to_thread(daemon.wait_ready)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop what is still running (SIGKILL), and the observer."""
        for daemon in self.daemons:
            daemon.kill9()
        if self._observer is not None:
            self._observer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._observer

    async def stop(self) -> list[int]:
        """Stop every daemon gracefully (its outbox drains); return their exit codes."""
        return [await asyncio.to_thread(d.stop) for d in self.daemons]

    def sent(self) -> dict[str, int]:
        """Return, per daemon hub, how many distinct records the broker accepted from it."""
        return {hub: len(payloads) for hub, payloads in self.seen.items()}

    async def _observe(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="fleet-observer") as client:
            for hub in self.seen:
                await client.subscribe(f"{BASE}/{hub}/data/#", qos=1)
            self._ready.set()
            async for message in client.messages:
                hub = message.topic.value.split("/", 2)[1]
                if isinstance(message.payload, bytes) and hub in self.seen:
                    self.seen[hub].add(message.payload)
