"""HomeKit accessories for the Wi-Fi benchmark, in a process of their own (so the hub's memory
is measured without them): ``python -m bench.wifi_accessories``.

Each ``start`` line on stdin starts one HAP-python accessory on 127.0.0.1 and answers one JSON
line ``{"id", "code", "announced"}`` (``announced``: CLOCK_MONOTONIC just before it registered
its mDNS service, comparable across processes). End of input stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

from drivers.homekit.simulator import SimulatedAccessory


async def serve() -> None:
    """Start an accessory per ``start`` line until stdin ends."""
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        count = 0
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() != "start":
                continue
            count += 1
            announced = time.monotonic()
            accessory = await stack.enter_async_context(SimulatedAccessory(name=f"Bench{count}"))
            answer = {"id": accessory.device_id, "code": accessory.setup_code}
            print(json.dumps({**answer, "announced": announced}), flush=True)


if __name__ == "__main__":
    asyncio.run(serve())
