"""Bad input from a device marks that device errored/offline, counts it, and harms nothing else."""

from __future__ import annotations

import logging

import pytest

from drivers.shelly.simulator import Fault, SimulatedShelly
from tests.devices.helpers import wait_for

from .helpers import Hub, MakeDevice, view


async def paired_pair(hub: Hub, make_device: MakeDevice) -> tuple[SimulatedShelly, str, str]:
    """Start a faulty-to-be and a healthy device, pair both, wait for readings of both."""
    faulty, healthy = await make_device(), await make_device()
    bad, good = (hub.registry.pseudonym(d.device_id) for d in (faulty, healthy))
    hub.registry.permit_join(30)
    await wait_for(lambda: hub.registry.paired_ids() == frozenset({bad, good}))
    await wait_for(lambda: bool(hub.readings_of(bad)) and bool(hub.readings_of(good)))
    return faulty, bad, good


def errored_with(hub: Hub, device: str, reason: str) -> bool:
    """Return whether the registry reported ``device`` offline with ``reason``."""
    return any(
        e.kind == "offline" and e.device == device and e.error == reason for e in hub.events.events
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.HTTP_500, "http_status"),
        (Fault.GARBAGE_JSON, "bad_json"),
        (Fault.WRONG_CONTENT_TYPE, "content_type"),
        (Fault.HANG, "timeout"),
        (Fault.BAD_SHAPE, "bad_shape"),
    ],
)
async def test_rpc_faults(hub: Hub, make_device: MakeDevice, fault: Fault, reason: str) -> None:
    faulty, bad, good = await paired_pair(hub, make_device)
    faulty.set_fault(fault)
    await wait_for(lambda: errored_with(hub, bad, reason))
    assert hub.counters.get(f"mdns.errors.{reason}") >= 1
    assert not view(hub, bad).online
    assert view(hub, bad).error == reason
    assert view(hub, bad).paired
    # The other device is unaffected, the transport keeps running.
    healthy_count = len(hub.readings_of(good))
    await wait_for(lambda: len(hub.readings_of(good)) > healthy_count + 1)
    assert view(hub, good).online
    assert view(hub, good).error is None
    # Fixed: the next good poll brings it back.
    faulty.set_fault(None)
    bad_count = len(hub.readings_of(bad))
    await wait_for(lambda: len(hub.readings_of(bad)) > bad_count)
    assert view(hub, bad).online
    assert view(hub, bad).error is None


@pytest.mark.parametrize(
    ("txt", "reason"),
    [
        ({"gen": "2", "ver": "1.0.0"}, "missing_property"),
        ({"gen": "two", "app": "Plus1PM", "ver": "1.0.0"}, "bad_txt"),
        ({"gen": "1", "app": "Plus1PM", "ver": "1.0.0"}, "bad_txt"),
        ({"gen": "2", "app": "Plus 1PM!", "ver": "1.0.0"}, "bad_txt"),
        ({"gen": "2", "app": "Plus1PM", "ver": None}, "bad_txt"),
    ],
)
async def test_txt_faults(
    hub: Hub, make_device: MakeDevice, txt: dict[str, str | None], reason: str
) -> None:
    faulty, bad, good = await paired_pair(hub, make_device)
    await faulty.set_txt(txt)
    await wait_for(lambda: errored_with(hub, bad, reason))
    assert hub.counters.get(f"mdns.errors.{reason}") >= 1
    # No collection while the announcement is unusable; the other device carries on.
    count, healthy_count = len(hub.readings_of(bad)), len(hub.readings_of(good))
    await wait_for(lambda: len(hub.readings_of(good)) > healthy_count + 2)
    assert len(hub.readings_of(bad)) <= count + 1  # at most one poll already in flight
    # Fixed by a firmware update. (Flipping back to the very TXT record it had before is lost
    # in zeroconf 0.154's cache: the old record's entry is reused with its expired TTL.)
    faulty.firmware = "1.0.1"
    await faulty.set_txt(None)
    await wait_for(lambda: view(hub, bad).online)
    await wait_for(lambda: len(hub.readings_of(bad)) > count + 1)


async def test_a_device_that_never_announces_properly_is_not_listed(
    hub: Hub, make_device: MakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    broken = SimulatedShelly(interfaces=("127.0.0.1",), probe=False)
    broken.txt_override = {"app": "Plus1PM", "ver": "1.0.0"}  # no gen
    healthy = await make_device()
    async with broken:
        await wait_for(lambda: hub.counters.get("mdns.errors.missing_property") >= 1)
        await wait_for(
            lambda: hub.registry.get(hub.registry.pseudonym(healthy.device_id)) is not None
        )
        assert hub.registry.get(hub.registry.pseudonym(broken.device_id)) is None
    faults = [r for r in caplog.records if r.getMessage() == "mdns device fault"]
    assert len(faults) == 1  # once per reason, not at every attempt
    assert broken.device_id not in str(vars(faults[0]))


async def test_pairing_faults_leave_a_candidate_that_pairs_later(
    hub: Hub, make_device: MakeDevice
) -> None:
    shelly = await make_device()
    device = hub.registry.pseudonym(shelly.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None)
    shelly.set_fault(Fault.HTTP_500)
    hub.registry.permit_join(30)
    await wait_for(lambda: view(hub, device).error == "http_status")
    assert not view(hub, device).paired
    assert hub.counters.get("mdns.errors.http_status") >= 1
    shelly.set_fault(None)
    await wait_for(lambda: hub.registry.is_paired(device))  # retried inside the window


async def test_a_device_answering_for_another_id_is_refused(
    hub: Hub, make_device: MakeDevice
) -> None:
    shelly = await make_device()
    device = hub.registry.pseudonym(shelly.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None)
    shelly.device_id = "shellyplus1pm-000000000000"  # the HTTP side now claims another device
    hub.registry.permit_join(30)
    await wait_for(lambda: view(hub, device).error == "bad_shape")
    assert not hub.registry.is_paired(device)
