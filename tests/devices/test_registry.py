"""The device registry: candidates, pairing, permit-join windows, status, erasure, storage."""

from __future__ import annotations

import asyncio
import logging

import aiosqlite
import pytest

from gateway.consent.policy import ConsentPolicy
from gateway.devices import DeviceInfo, DeviceRegistry
from gateway.errors import CommandError, DeviceError
from gateway.logs import JsonFormatter
from gateway.pseudonym import Pseudonymizer
from gateway.tasks import running

from .helpers import EventLog, FakePairer, sighting, wait_for


async def test_a_sighting_makes_a_listed_candidate(
    registry: DeviceRegistry, pairer: FakePairer, events: EventLog
) -> None:
    device = registry.seen(sighting())
    assert registry.pseudonym("shellyplus1pm-aabbccddee01") == device
    assert len(device) == 16
    listing = registry.devices()
    assert listing["paired"] == []
    [entry] = listing["candidates"]
    assert entry["id"] == device
    assert entry["transport"] == "mdns"
    assert entry["model"] == "Plus1PM"
    assert entry["firmware"] == "1.0.0"
    assert entry["online"] is True
    assert entry["activated_at"] is None
    assert "mac" not in entry
    assert not registry.is_paired(device)
    assert pairer.calls == []  # candidates are never contacted
    assert events.kinds() == ["candidate"]


async def test_explicit_pair_reads_info_and_persists(
    registry: DeviceRegistry, pairer: FakePairer, events: EventLog, db: aiosqlite.Connection
) -> None:
    device = registry.seen(sighting())
    view = await registry.pair(device)
    assert view.paired
    assert view.model == "SNSW-001P16EU"
    assert view.name == "Kitchen plug"
    assert view.activated_at is not None
    assert registry.is_paired(device)
    assert [c.stable_id for c in pairer.calls] == ["shellyplus1pm-aabbccddee01"]
    assert events.kinds(device) == ["candidate", "paired"]
    async with db.execute("SELECT id, model FROM devices") as cursor:
        assert [tuple(row) for row in await cursor.fetchall()] == [(device, "SNSW-001P16EU")]
    assert await registry.pair(device) == registry.get(device)  # pairing again is a no-op
    assert len(pairer.calls) == 1


async def test_paired_devices_survive_a_restart_offline(
    db: aiosqlite.Connection, pseudonyms: Pseudonymizer, policy: ConsentPolicy
) -> None:
    pairer = FakePairer()
    async with running(DeviceRegistry(db, pseudonyms, policy)) as first:
        first.add_pairer("mdns", pairer)
        device = first.seen(sighting())
        await first.pair(device)
        await first.rename(device, "Desk lamp")
    async with running(DeviceRegistry(db, pseudonyms, policy)) as second:
        view = second.get(device)
        assert view is not None
        assert view.paired
        assert not view.online
        assert (view.name, view.model, view.mac) == (
            "Desk lamp",
            "SNSW-001P16EU",
            "AA:BB:CC:DD:EE:01",
        )
        assert view.last_seen is not None
        second.seen(sighting())
        again = second.get(device)
        assert again is not None
        assert again.online
        assert again.name == "Desk lamp"


async def test_permit_join_pairs_existing_and_new_candidates(
    registry: DeviceRegistry, pairer: FakePairer
) -> None:
    early = registry.seen(sighting("shellyplus1pm-000000000001"))
    registry.permit_join(0.5, "mdns")
    await wait_for(lambda: registry.is_paired(early))
    late = registry.seen(sighting("shellyplus1pm-000000000002"))
    await wait_for(lambda: registry.is_paired(late))
    await asyncio.sleep(0.6)  # let the window close
    assert not registry.joining("mdns")
    after = registry.seen(sighting("shellyplus1pm-000000000003"))
    await asyncio.sleep(0.05)
    assert not registry.is_paired(after)


async def test_a_window_for_one_transport_does_not_pair_another(
    registry: DeviceRegistry, pairer: FakePairer
) -> None:
    registry.add_pairer("ble", pairer)
    registry.permit_join(5, "ble")
    device = registry.seen(sighting())
    await asyncio.sleep(0.05)
    assert not registry.is_paired(device)
    registry.permit_join(0, "ble")
    assert not registry.joining("ble")
    ble = registry.seen(sighting("a4:c1:38:00:00:01", transport="ble"))
    registry.permit_join(5)  # every transport
    await wait_for(lambda: registry.is_paired(ble) and registry.is_paired(device))
    assert registry.paired_ids("ble") == frozenset({ble})


async def test_pairing_failure_marks_the_candidate_and_retries_later(
    registry: DeviceRegistry, pairer: FakePairer, events: EventLog
) -> None:
    pairer.error = DeviceError("http_status", "HTTP status 500")
    device = registry.seen(sighting())
    with pytest.raises(DeviceError) as caught:
        await registry.pair(device)
    assert caught.value.reason == "http_status"
    assert registry.get(device).error == "http_status"  # type: ignore[union-attr]
    registry.permit_join(5)
    registry.seen(sighting())  # inside the retry pause: no new attempt
    await asyncio.sleep(0.05)
    assert len(pairer.calls) == 1
    pairer.error = None
    await asyncio.sleep(0.25)
    registry.seen(sighting())
    await wait_for(lambda: registry.is_paired(device))
    assert registry.get(device).error is None  # type: ignore[union-attr]


async def test_pairing_that_hangs_times_out(
    db: aiosqlite.Connection, pseudonyms: Pseudonymizer, policy: ConsentPolicy
) -> None:
    async with running(DeviceRegistry(db, pseudonyms, policy, pair_timeout_s=0.1)) as registry:
        registry.add_pairer("mdns", FakePairer(delay=10))
        device = registry.seen(sighting())
        with pytest.raises(DeviceError) as caught:
            await registry.pair(device)
        assert caught.value.reason == "timeout"
        assert not registry.is_paired(device)


async def test_concurrent_pair_requests_read_the_device_once(
    db: aiosqlite.Connection, pseudonyms: Pseudonymizer, policy: ConsentPolicy
) -> None:
    pairer = FakePairer(delay=0.05)
    async with running(DeviceRegistry(db, pseudonyms, policy)) as registry:
        registry.add_pairer("mdns", pairer)
        device = registry.seen(sighting())
        first, second = await asyncio.gather(registry.pair(device), registry.pair(device))
        assert first == second
        assert len(pairer.calls) == 1


async def test_unknown_devices_are_not_found(registry: DeviceRegistry) -> None:
    for call in (
        registry.pair("0123456789abcdef"),
        registry.unpair("0123456789abcdef"),
        registry.rename("0123456789abcdef", "x"),
    ):
        with pytest.raises(CommandError) as caught:
            await call
        assert caught.value.code == "not_found"
    candidate = registry.seen(sighting())
    with pytest.raises(CommandError):
        await registry.unpair(candidate)  # a candidate is not paired


async def test_unpair_ends_collection_and_erases(
    registry: DeviceRegistry, erased: list[str], events: EventLog, db: aiosqlite.Connection
) -> None:
    device = registry.seen(sighting())
    await registry.pair(device)
    await registry.unpair(device)
    assert not registry.is_paired(device)
    assert registry.get(device) is None
    assert erased == [device]
    assert events.kinds(device)[-1] == "unpaired"
    async with db.execute("SELECT COUNT(*) FROM devices") as cursor:
        assert await cursor.fetchone() == (0,)
    assert not registry.is_paired(registry.seen(sighting()))  # seen again: a candidate


async def test_mac_is_shown_only_with_network_consent(
    registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    device = registry.seen(sighting())
    await registry.pair(device)
    assert "mac" not in registry.devices()["paired"][0]
    policy.set_flag("network", "on", device)
    assert registry.devices()["paired"][0]["mac"] == "AA:BB:CC:DD:EE:01"
    policy.set_try_now(True)  # Try Now collects no personal data
    assert "mac" not in registry.devices()["paired"][0]


async def test_offline_after_silence_and_back_online(
    registry: DeviceRegistry, events: EventLog
) -> None:
    candidate = registry.seen(sighting("shellyplus1pm-000000000001"))
    device = registry.seen(sighting())
    await registry.pair(device)
    await wait_for(lambda: not registry.get(device).online, within=2)  # type: ignore[union-attr]
    assert registry.get(candidate) is None  # a silent candidate is forgotten
    assert events.kinds(candidate) == ["candidate", "offline", "lost"]
    registry.seen(sighting())
    assert registry.get(device).online  # type: ignore[union-attr]
    assert events.kinds(device)[-2:] == ["offline", "online"]


async def test_errors_are_recorded_and_cleared(registry: DeviceRegistry, events: EventLog) -> None:
    device = registry.seen(sighting())
    await registry.pair(device)
    assert registry.set_offline(device, DeviceError("timeout", "no answer"))
    assert not registry.set_offline(device, DeviceError("timeout", "no answer"))  # no change
    view = registry.get(device)
    assert view is not None
    assert not view.online
    assert view.error == "timeout"
    assert events.events[-1].error == "timeout"
    registry.seen(sighting())
    view = registry.get(device)
    assert view is not None
    assert view.online
    assert view.error is None


async def test_firmware_and_upgrade_info_are_stored(
    registry: DeviceRegistry, db: aiosqlite.Connection, events: EventLog
) -> None:
    device = registry.seen(sighting())
    await registry.pair(device)
    registry.seen(sighting(firmware="1.1.0"))
    registry.update(device, update_available=True, update_version="1.2.0")
    assert events.kinds(device)[-2:] == ["updated", "updated"]
    view = registry.get(device)
    assert view is not None
    assert view.firmware == "1.1.0"
    assert view.update_available

    async def stored() -> tuple[object, ...] | None:
        async with db.execute(
            "SELECT firmware, update_available, update_version FROM devices"
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else tuple(row)

    for _ in range(100):
        if await stored() == ("1.1.0", 1, "1.2.0"):
            break
        await asyncio.sleep(0.01)
    assert await stored() == ("1.1.0", 1, "1.2.0")


async def test_candidate_list_is_bounded(
    db: aiosqlite.Connection, pseudonyms: Pseudonymizer, policy: ConsentPolicy
) -> None:
    async with running(DeviceRegistry(db, pseudonyms, policy, max_candidates=3)) as registry:
        for n in range(10):
            registry.seen(sighting(f"shellyplus1pm-00000000000{n}"))
        assert registry.counts() == {"paired": 0, "online": 0, "candidates": 3}


async def test_logs_name_devices_by_pseudonym_only(
    registry: DeviceRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    device = registry.seen(sighting())
    await registry.pair(device)
    registry.set_offline(device, DeviceError("timeout", "no answer"))
    registry.seen(sighting(firmware="9.9.9"))
    await registry.unpair(device)
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name.startswith("gateway")]
    assert any(device in line for line in lines)
    for secret in ("aabbccddee01", "AA:BB:CC", "127.0.0.1", "Kitchen", "9.9.9"):
        assert not any(secret.lower() in line.lower() for line in lines), secret


async def test_removing_a_pairer_stops_auto_pairing(registry: DeviceRegistry) -> None:
    other = FakePairer()
    remove = registry.add_pairer("mdns", other)
    remove()
    registry.permit_join(5)
    device = registry.seen(sighting())
    await asyncio.sleep(0.05)
    assert not registry.is_paired(device)
    with pytest.raises(DeviceError) as caught:
        await registry.pair(device)
    assert caught.value.reason == "unsupported"


async def test_info_stored_at_pairing_is_what_the_pairer_read(
    registry: DeviceRegistry, pairer: FakePairer
) -> None:
    pairer.info = DeviceInfo(
        model="M",
        firmware="2.0.0",
        mac=None,
        name=None,
        update_available=True,
        update_version="2.1.0",
    )
    device = registry.seen(sighting())
    view = await registry.pair(device)
    assert (view.model, view.firmware, view.mac, view.update_available, view.update_version) == (
        "M",
        "2.0.0",
        None,
        True,
        "2.1.0",
    )
    assert view.name is None
