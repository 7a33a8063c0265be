"""One task group owns every loop of the daemon: a loop that crashes ends the daemon with its
error (the service manager restarts it), whichever component the loop belongs to."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import daemon
from tests.support.hub import hub_config
from tests.support.mosquitto import Mosquitto


@pytest.mark.parametrize("loop", ["devices-writer", "ble-online", "outbox-commit"])
async def test_a_crashing_loop_of_any_component_ends_the_daemon(
    broker: Mosquitto, tmp_path: Path, loop: str
) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "loops",
        discovery={"ble": {"enabled": True}},
        simulator={"devices": 1, "rate_hz": 5.0, "ble_devices": 1},
    )
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Hub] = asyncio.get_running_loop().create_future()
    crash = asyncio.Event()
    original = daemon.build_hub

    async def build(*args: Any) -> daemon.Hub:
        hub = await original(*args)
        assert loop in hub.loops  # the component's loop runs in the daemon's task group

        async def crashing() -> None:
            await crash.wait()
            raise RuntimeError(f"{loop} failed")

        hub.loops[loop] = crashing
        return hub

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(daemon, "build_hub", build)
        task = asyncio.create_task(daemon.run(config, stop, on_ready=ready.set_result))
        await asyncio.wait_for(ready, 10)
        crash.set()
        with pytest.raises(ExceptionGroup) as ended:
            await asyncio.wait_for(task, 20)
    assert ended.group_contains(RuntimeError, match=f"{loop} failed")
