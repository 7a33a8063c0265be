"""Readings nobody consented to are dropped as they arrive: they take no queue slot, and a full
queue refuses before anything else is looked at."""

from __future__ import annotations

from pathlib import Path

from drivers.simulator import DRIVER
from gateway.model import Reading
from tests.support.hub import hub_config, running_hub
from tests.support.mosquitto import free_port


async def test_a_reading_whose_every_category_is_off_takes_no_queue_slot(tmp_path: Path) -> None:
    config = hub_config(tmp_path, free_port(), "door", simulator={"devices": 3, "rate_hz": 0.001})
    async with running_hub(config) as hub:
        wearable = hub.pseudonyms.device("simulator-1")  # kind i % 3 == 1: health
        before = hub.pipeline.queued, hub.counters.get("dropped.health")
        assert hub.pipeline.submit(Reading(wearable, DRIVER, 1.0, {"heart_rate": 70, "steps": 3}))
        assert (hub.pipeline.queued, hub.counters.get("dropped.health")) == (
            before[0],
            before[1] + 1,
        )
        answer = await hub.router.dispatch("consent/set", b'{"flag":"health","state":"on"}')
        assert answer.body["status"] == "ok"
        hub.pipeline.submit(Reading(wearable, DRIVER, 2.0, {"heart_rate": 71}))
        assert hub.counters.get("dropped.health") == before[1] + 1  # let in: consent is on


async def test_a_full_queue_refuses_before_the_door_looks(tmp_path: Path) -> None:
    config = hub_config(
        tmp_path, free_port(), "door-full", simulator={"devices": 3, "rate_hz": 0.001}
    )
    async with running_hub(config) as hub:
        thermometer, wearable = (hub.pseudonyms.device(f"simulator-{i}") for i in (0, 1))
        async with hub.pipeline.exclusive():  # no batch is taken meanwhile
            while hub.pipeline.submit(Reading(thermometer, DRIVER, 1.0, {"temperature": 20.0})):
                pass
            full = hub.counters.get("dropped.queue_full")
            assert not hub.pipeline.submit(Reading(wearable, DRIVER, 1.0, {"heart_rate": 70}))
            assert hub.counters.get("dropped.queue_full") == full + 1
            assert hub.counters.get("dropped.health") == 0
