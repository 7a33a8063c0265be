"""A Wi-Fi device's upgrade state is known from the moment it is paired, not its first poll."""

from __future__ import annotations

from tests.devices.helpers import wait_for

from .helpers import Hub, MakeDevice


async def test_upgrade_info_read_at_pairing(hub: Hub, make_device: MakeDevice) -> None:
    shelly = await make_device()
    shelly.update_stable = "1.4.2"
    device = hub.registry.pseudonym(shelly.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None)
    assert shelly.requests == 0
    paired = await hub.registry.pair(device)
    # The answer of pair itself: info and status were both read before it returned.
    assert (paired.update_available, paired.update_version) == (True, "1.4.2")
    assert shelly.requests == 2
