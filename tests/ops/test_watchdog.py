"""The systemd watchdog: READY=1 once started, WATCHDOG=1 only while the pipeline, the
discovery and MQTT loops and the database are alive; withheld (and logged) when one is stuck
or dead."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto

PERIOD_S = 0.1  # WATCHDOG_USEC / 2


class NotifySocket:
    """The AF_UNIX datagram socket systemd listens on; records what the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    async def pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self, since: float = 0.0) -> int:
        return sum(1 for t, m in self.messages if m == "WATCHDOG=1" and t >= since)


@contextlib.asynccontextmanager
async def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    notify = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", str(int(PERIOD_S * 2 * 1_000_000)))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    task = asyncio.create_task(notify.pump(), name="notify-socket")
    try:
        yield notify
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        notify.sock.close()


def reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(r, "reason", "")) for r in caplog.records if r.name == "gateway.liveness"]


async def test_watchdog_follows_the_loops(
    broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "watchdog",
        discovery={"ble": {"enabled": True}},
        simulator={"devices": 2, "rate_hz": 5.0, "ble_devices": 1},
    )
    async with systemd(tmp_path, monkeypatch) as notify, running_hub(config) as hub:
        await eventually(lambda: notify.pings() >= 3, what="watchdog pings")
        assert notify.messages[0][1] == "READY=1"

        async with hub.pipeline.exclusive():  # a batch stuck between gate and outbox
            await asyncio.sleep(PERIOD_S * 2)  # let a check that started earlier finish
            stuck = time.monotonic()
            await asyncio.sleep(PERIOD_S * 5)
            assert notify.pings(since=stuck) == 0
        resumed = time.monotonic()
        await eventually(lambda: notify.pings(since=resumed) >= 2, what="pings resume")
        assert any("pipeline is stuck" in r for r in reasons(caplog))

        online = next(t for t in asyncio.all_tasks() if t.get_name() == "ble-online")
        online.cancel()  # a discovery loop stops without an error
        await asyncio.sleep(PERIOD_S * 3)
        dead = time.monotonic()
        await asyncio.sleep(PERIOD_S * 5)
        assert notify.pings(since=dead) == 0
        assert "loop ble-online ended" in reasons(caplog)
    assert "STOPPING=1" in [m for _, m in notify.messages]
