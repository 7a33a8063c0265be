"""The real daemon under a faked wall clock (libfaketime; monotonic clock real), a real
Mosquitto and the consumer library: boot at 1970 with the broker down then a jump to now, boot
at 1970 past the hold limit (marked epochs, keys/rotate deferred), a backward jump of a year,
a forward jump of a year (docs/clock.md)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.clock.faketime_hub import YEAR_S, Watcher, faked_hub, real_now
from tests.support.hub import eventually
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_requests import requests

# Short retention: a record dated by a 1970 clock, or expired by a clock a year ahead, would
# be destroyed within a sweep.
SHORT_RETENTION = "[retention]\ndefault_s = 30.0\nsweep_interval_s = 0.2\n"
SIMULATED = "[simulator]\ndevices = 2\nrate_hz = 10.0\n"
# Rows a snapshot of the live hub may count in flight once a backlog is delivered: the readings
# keep coming, and a health snapshot can fall in the turn a batch is committed (a second's worth).
LIVE_ROWS = 20


async def test_boot_at_1970_with_the_broker_down_then_the_clock_jumps_to_now(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", "allow_anonymous true")  # down at boot
    spawned = real_now()
    async with faked_hub(
        tmp_path, broker.port, "clock-boot", SIMULATED + SHORT_RETENTION, offset=100 - spawned
    ) as hub:
        await asyncio.sleep(3.0)  # collecting at 1970, nothing to send to
        assert "hub time anchored" not in hub.log()
        jumped = real_now()
        hub.set_offset(0)  # NTP synchronises: the wall clock jumps to now
        await hub.wait_log("hub time anchored", timeout=5)
        await asyncio.sleep(0.5)  # a sweep or two after the jump, still no broker
        broker.start()
        watcher = Watcher(hub, broker.port)
        async with watcher.watching():
            await eventually(
                lambda: (
                    watcher.health.get("clock") == "synced"
                    and watcher.health["outbox"]["rows"] <= LIVE_ROWS
                    and watcher.health["clock_held"] == 0
                ),
                timeout=20,
                what="backlog delivered",
            )
            await asyncio.sleep(0.5)
    broker.stop()
    sink = watcher.sink
    assert sink.errors == []
    assert sink.gaps() == []
    stamps = [r.ts for r in sink.opened]
    before_jump = [ts for ts in stamps if ts < jumped]
    # ~10 Hz x 3 s read at "1970" by the environment device (the health device's readings
    # stop at the consent door), less the first tick's wait: all delivered (no gaps), dated
    # when they were read
    assert len(before_jump) >= 20
    assert min(stamps) >= spawned - 1
    assert max(stamps) <= real_now() + 1
    counters = watcher.health["counters"]
    assert "retention.expired" not in counters
    assert "clock.sealed_unsynced" not in counters


async def test_boot_at_1970_past_the_hold_limit_seals_marked_epochs_the_consumer_opens(
    tmp_path: Path, broker: Mosquitto
) -> None:
    spawned = real_now()
    config = SIMULATED + "[clock]\nhold_max_records = 10\n"
    async with faked_hub(tmp_path, broker.port, "clock-over", config, offset=100 - spawned) as hub:
        watcher = Watcher(hub, broker.port)
        async with watcher.watching(), requests(hub.config, broker.port) as ask:
            for _ in range(3):  # the hub may not have subscribed yet on a loaded machine
                with contextlib.suppress(TimeoutError):
                    answer = await ask("keys/rotate")
                    break
            assert answer["status"] == "ok"
            assert answer["data"]["deferred"] == "clock_unsynced"
            await eventually(
                lambda: len(watcher.sink.opened) >= 20, what="readings beyond the hold limit"
            )
            assert all(r.ts_estimated for r in watcher.sink.opened)
            deferred_at = answer["data"]["epoch"]
            jumped = real_now()
            hub.set_offset(0)  # NTP synchronises
            await hub.wait_log("hub time anchored", timeout=5)
            await eventually(
                lambda: any(not r.ts_estimated for r in watcher.sink.opened),
                what="records of a trusted epoch",
            )
            epochs = watcher.sink.consumer.epochs()
    sink = watcher.sink
    assert sink.errors == []
    assert sink.gaps() == []
    # marked epochs only before the sync; the deferred rotation took place at the anchor
    assert all(e.estimated for e in epochs if e.epoch <= deferred_at)
    trusted = [e for e in epochs if not e.estimated]
    assert trusted
    assert min(e.not_before for e in trusted) >= jumped - 2
    assert all(abs(r.ts - real_now()) < 60 for r in sink.opened if not r.ts_estimated)
    assert "clock unsynced" in hub.log()


async def test_backward_jump_epochs_still_rotate_and_records_keep_hub_time(
    tmp_path: Path, broker: Mosquitto
) -> None:
    async with faked_hub(
        tmp_path, broker.port, "clock-back", SIMULATED, offset=0, epoch_max_age_s=1.0
    ) as hub:
        watcher = Watcher(hub, broker.port)
        async with watcher.watching():
            await eventually(lambda: len(watcher.sink.opened) > 10, what="records flow")
            hub.set_offset(-YEAR_S)
            jumped = real_now()
            await eventually(
                lambda: watcher.health.get("clock") == "unsynced",
                timeout=5,
                what="the step back is reported",
            )
            epochs = watcher.sink.consumer.epochs()
            at_jump = max(e.epoch for e in epochs)
            await asyncio.sleep(4.0)
            epochs = watcher.sink.consumer.epochs()
    sink = watcher.sink
    assert sink.errors == []
    # epoch_max_age_s = 1: about 4 rotations due in 4 s; on a wall clock gone back they stop
    assert max(e.epoch for e in epochs) - at_jump >= 3
    late = [r for r in sink.opened if r.epoch > at_jump]
    assert late
    assert all(abs(r.ts - real_now()) < 30 for r in late)  # hub time, not a year ago
    assert all(e.not_before > jumped - 60 for e in epochs if e.epoch > at_jump)


async def test_forward_jump_expires_nothing(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", "allow_anonymous true")  # an outage
    config = SIMULATED + SHORT_RETENTION
    async with faked_hub(tmp_path, broker.port, "clock-fwd", config, offset=0) as hub:
        await asyncio.sleep(2.0)  # records queue up
        hub.set_offset(YEAR_S)
        await hub.wait_log("stepped away from hub time", timeout=5)
        await asyncio.sleep(1.0)  # several sweeps at a wall clock a year ahead
        broker.start()
        watcher = Watcher(hub, broker.port)
        async with watcher.watching():
            await eventually(
                lambda: bool(watcher.health) and watcher.health["outbox"]["rows"] <= LIVE_ROWS,
                timeout=20,
                what="backlog delivered",
            )
            await asyncio.sleep(0.5)
    broker.stop()
    sink = watcher.sink
    assert sink.errors == []
    assert sink.gaps() == []
    assert len(sink.opened) >= 30
    assert "retention.expired" not in watcher.health["counters"]
    assert all(abs(r.ts - real_now()) < 60 for r in sink.opened)
