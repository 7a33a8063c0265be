"""HomeKit online status and permit_join: a real HAP-python accessory on 127.0.0.1 and real
zeroconf multicast. Online follows the mDNS announcement as well as the event connection; a
permit_join window never pairs an accessory without its setup code, nor retries it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from drivers.homekit.simulator import SETUP_CODE, SimulatedAccessory
from gateway.config import MdnsConfig
from tests.devices.helpers import wait_for

from .conftest import HomeHub, listed, open_hub
from .test_pairing import ask


def online(hub: HomeHub, device: str) -> bool:
    """Return whether the registry shows ``device`` online."""
    view = hub.registry.get(device)
    return view is not None and view.online


async def test_online_follows_the_announcement_of_a_paired_accessory(
    home: HomeHub, accessory: SimulatedAccessory
) -> None:
    device = await listed(home, accessory)
    answer = await ask(home, "pair", transaction="1", device=device, setup_code=SETUP_CODE)
    assert answer["status"] == "ok", answer
    await wait_for(lambda: online(home, device), 5)

    # The service withdrawn (goodbye packets) while the event connection stays up: offline.
    await accessory.withdraw()
    await wait_for(lambda: not online(home, device), 5)
    accessory.temperature = 24.0  # events still arrive; online status does not come back
    await wait_for(lambda: any(r.fields.get("temperature_c") == 24.0 for r in home.readings), 5)
    assert not online(home, device)

    # Announced again: online again, still paired, no new setup code.
    await accessory.announce()
    await wait_for(lambda: online(home, device), 10)
    assert home.registry.is_paired(device)
    assert accessory.is_paired()


async def test_permit_join_skips_an_accessory_without_its_code_once(
    tmp_path: Path,
    mdns_config: MdnsConfig,
    accessory: SimulatedAccessory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_hub(
        tmp_path / "state", mdns_config, os.urandom(32), os.urandom(32), pair_retry_s=0.1
    ) as home:
        device = await listed(home, accessory)
        caplog.set_level(logging.INFO)
        answer = await ask(home, "permit_join", transaction="1", duration=30, transport="mdns")
        assert answer["status"] == "ok", answer
        # Many sightings inside the window (an mDNS query every 0.2 s): skipped, counted once.
        seen = home.registry.get(device)
        assert seen is not None
        first = seen.last_seen or 0.0

        def seen_for_a_second() -> bool:
            view = home.registry.get(device)
            return view is not None and (view.last_seen or 0.0) > first + 1.0

        await wait_for(seen_for_a_second, 10)
        assert home.counters.get("homekit.skipped_without_code") == 1
        assert not home.registry.is_paired(device)
        assert not accessory.is_paired()
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        view = home.registry.get(device)
        assert view is not None
        assert view.error is None

        # The code given with an explicit pair during the window pairs it.
        answer = await ask(home, "pair", transaction="2", device=device, setup_code=SETUP_CODE)
        assert answer["status"] == "ok", answer
        assert accessory.is_paired()
        assert home.counters.get("homekit.skipped_without_code") == 1
        await ask(home, "unpair", transaction="3", device=device)
        assert not accessory.is_paired()
