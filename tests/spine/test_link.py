"""The broker connection: every outage is retried from the shortest delay again."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

from gateway.daemon import Hub
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


def connected_times(hub: Hub, times: int) -> bool:
    """Return whether the hub has connected at least ``times`` times."""
    return hub.link.connects >= times


async def test_each_outage_reconnects_quickly_not_after_the_last_ones_backoff(
    own_broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, own_broker.port, "link-backoff")
    async with running_hub(config) as hub:
        await hub.link.connected.wait()
        for cycle in range(4):
            own_broker.kill9()
            await asyncio.sleep(1.0)  # several failed attempts: the backoff grows meanwhile
            own_broker.start()
            started = time.monotonic()
            await eventually(
                functools.partial(connected_times, hub, cycle + 2), timeout=15, what="reconnected"
            )
            # the delay after 1 s of refusals is at most a few seconds, whatever came before
            assert time.monotonic() - started < 4.0
