"""Running a real hub daemon in-process against a real broker, and a test consumer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from gateway import daemon
from gateway.config import Config, parse_config
from gateway.envelope.consumer import Consumer
from gateway.envelope.keys import (
    generate_recipient,
    hub_signing_key,
    load_recipient_private,
)
from gateway.envelope.session import Session
from tests.support.pump import pumping


def hub_config(tmp_path: Path, port: int, hub_id: str, **sections: dict[str, Any]) -> Config:
    """Return a validated config for a hub with its own state dir and recipient key pair."""
    keys = tmp_path / "recipient"
    if not (keys / "recipient.pub").exists():
        keys.mkdir(parents=True, exist_ok=True)
        generate_recipient(keys)
    raw: dict[str, Any] = {
        "hub_id": hub_id,
        "state_dir": str(tmp_path / f"state-{hub_id}"),
        "mqtt": {"host": "127.0.0.1", "port": port, "health_interval_s": 0.5},
        "crypto": {"recipient_public_key": str(keys / "recipient.pub")},
        # Transports are off unless a test turns them on: no multicast, no system D-Bus.
        "discovery": {
            "mdns": {"enabled": False, "interfaces": ["127.0.0.1"]},
            "ble": {"enabled": False},
        },
    }
    for name, values in sections.items():
        merged = dict(raw.get(name, {}))
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        raw[name] = merged
    return parse_config(raw, tmp_path)


@contextlib.asynccontextmanager
async def running_hub(config: Config) -> AsyncIterator[daemon.Hub]:
    """Run the daemon for ``config`` until the block ends (graceful stop)."""
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Hub] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        daemon.run(config, stop, on_ready=ready.set_result), name="hub-under-test"
    )
    try:
        async with asyncio.timeout(10):
            waiters: set[asyncio.Future[Any]] = {task, ready}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        yield ready.result()
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=20)
        if not done:  # show what did not stop, then fail
            for pending in asyncio.all_tasks():
                if not pending.done() and pending is not asyncio.current_task():
                    pending.print_stack()
            task.cancel()
            raise AssertionError("the hub did not stop within 20 s")
        task.result()


@dataclass
class RecordSink:
    """Subscribes to one hub's records and opens them with the consumer library."""

    config: Config
    port: int
    consumer: Consumer
    opened: list[Any] = field(default_factory=list)
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    session: Session = field(init=False)

    def __post_init__(self) -> None:
        self.session = Session(self.consumer)  # holds records until their epoch is announced

    def handle(self, topic: str, payload: bytes) -> None:
        """Feed one received message to the consumer library's session."""
        outcome = self.session.handle(topic, payload)
        self.opened.extend(outcome.opened)
        self.duplicates += outcome.duplicates
        self.errors.extend(f"{type(r.error).__name__}: {r.error}" for r in outcome.rejected)

    def seqs(self) -> set[tuple[int, int]]:
        """Return the (epoch, seq) pairs opened so far."""
        return {(r.epoch, r.seq) for r in self.opened}

    def gaps(self) -> list[tuple[int, int]]:
        """Return (epoch, seq) pairs missing below the highest seq opened in each epoch."""
        by_epoch: dict[int, set[int]] = {}
        for epoch, seq in self.seqs():
            by_epoch.setdefault(epoch, set()).add(seq)
        return [
            (e, s)
            for e, seqs in sorted(by_epoch.items())
            for s in range(max(seqs) + 1)
            if s not in seqs
        ]


def make_sink(config: Config, port: int, tmp_path: Path) -> RecordSink:
    """Return a RecordSink trusting this hub's key and holding the recipient key."""
    hub_key = hub_signing_key(config.state_dir).public_key()
    recipient = load_recipient_private(tmp_path / "recipient" / "recipient.key")
    return RecordSink(config, port, Consumer(recipient, {config.hub_id: hub_key}))


@contextlib.asynccontextmanager
async def subscribed(consumer: RecordSink) -> AsyncIterator[asyncio.Task[None]]:
    """Subscribe ``consumer`` to its hub's epoch and data topics while the block runs.

    A persistent session (clean_session false) that reconnects after broker restarts, so
    records published while it was away are queued for it by the broker.
    """
    root = consumer.config.topic_root

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1", consumer.port, identifier=f"test-consumer-{root}", clean_session=False
        )

    topics = (f"{root}/epoch", f"{root}/data/#")
    async with pumping(client, topics, consumer.handle, name="test-consumer") as task:
        yield task


async def eventually(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait until ``condition()`` is true, polling; fail the test after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what}: not met within {timeout} s") from None
