"""An open aggregate window of a device that may no longer report is never sealed: coarse
health of a device unpaired (or erased) while its window is open does not leave the hub."""

from __future__ import annotations

import math
from pathlib import Path

from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import free_port

HEALTH = "health"


async def test_the_window_of_a_device_no_longer_known_is_dropped_when_it_closes(
    tmp_path: Path,
) -> None:
    # offline (nothing listens on the port): sealed records stay in the outbox to be counted
    config = hub_config(
        tmp_path,
        free_port(),
        "aggregate-unknown",
        simulator={"devices": 6, "rate_hz": 20.0},  # devices 1 and 4 are health wearables
        consent={"aggregate_window_s": 3600.0},  # windows stay open until the test closes them
    )
    async with running_hub(config) as hub:
        answer = await hub.router.dispatch("consent/set", b'{"flag":"health","state":"coarse"}')
        assert answer.body["status"] == "ok"
        gone, kept = (hub.pseudonyms.device(f"simulator-{i}") for i in (1, 4))
        await eventually(
            lambda: hub.counters.get("dropped.health") == 0 and hub.pipeline.committed > 0,
            what="readings taken while the windows are open",
        )
        hub.simulated.discard(gone)  # as unpairing makes a paired device unknown
        assert await hub.pipeline.commit_aggregates(math.inf) >= 1
        sealed = {group.device for group in await hub.outbox.queued() if group.category == HEALTH}
    assert kept in sealed
    assert gone not in sealed
    assert hub.counters.get("dropped.unknown_device") >= 1
