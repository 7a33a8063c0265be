"""HomeKit end to end: a real HAP-python accessory on 127.0.0.1, discovered over real zeroconf
multicast, paired by real aiohomekit with its setup code, read through characteristic events,
released at unpair."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import drivers
from drivers.homekit.chars import short_type
from drivers.homekit.simulator import SETUP_CODE, Database, SimulatedAccessory
from gateway.config import MdnsConfig
from gateway.discovery.homekit_keys import COLUMN
from tests.devices.helpers import wait_for

from .conftest import HomeHub, listed, open_hub


async def ask(hub: HomeHub, command: str, **params: Any) -> dict[str, Any]:
    """Dispatch ``command`` as the MQTT API would and return the response body."""
    response = await hub.router.dispatch(command, json.dumps(params).encode())
    return response.body


async def test_discover_pair_collect_unpair(home: HomeHub, accessory: SimulatedAccessory) -> None:
    device = await listed(home, accessory)

    # A candidate with what the TXT record says, never contacted.
    [candidate] = (await ask(home, "devices", transaction="1"))["data"]["candidates"]
    assert (candidate["id"], candidate["driver"], candidate["model"]) == (
        device,
        "homekit",
        "Thermo",
    )
    assert candidate["details"]["category"] == "sensor"
    assert candidate["details"]["accepts_pairing"] == "yes"
    assert home.readings == []

    # No code, a malformed code, a wrong code: clear errors, nothing paired.
    answer = await ask(home, "pair", transaction="2", device=device)
    assert answer["error"]["code"] == "invalid_request"
    assert "setup_code" in answer["error"]["message"]
    answer = await ask(home, "pair", transaction="3", device=device, setup_code="12-34")
    assert answer["error"]["code"] == "invalid_request"
    answer = await ask(home, "pair", transaction="4", device=device, setup_code="111-22-333")
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "invalid_request"
    assert "refused the setup code" in answer["error"]["message"]
    assert not home.registry.is_paired(device)
    assert not accessory.is_paired()

    # The right code: paired, Accessory Information read into the device info.
    answer = await ask(home, "pair", transaction="5", device=device, setup_code="03145154")
    assert answer["status"] == "ok", answer
    entry = answer["data"]
    assert (entry["model"], entry["firmware"], entry["name"]) == ("Acme T1000", "1.2.3", "Thermo")
    assert accessory.is_paired()

    # Pairing keys sealed at rest: the row opens only with the storage key.
    stored = await home.pairings.load()
    assert set(stored) == {device}
    secret = str(stored[device]["iOSDeviceLTSK"])
    async with home.pairings._db.execute("SELECT sealed FROM homekit_pairings") as cursor:
        [(sealed,)] = list(await cursor.fetchall())
    assert secret.encode() not in bytes(sealed)
    assert COLUMN.encode() not in bytes(sealed)

    # Telemetry: the first reading carries the info, events carry values, all categorised.
    accessory.temperature = 23.0
    await wait_for(lambda: any(r.fields.get("temperature_c") == 23.0 for r in home.readings), 10)
    first = home.readings[0]
    assert first.driver == "homekit"
    assert first.fields["manufacturer"] == "Acme"
    assert first.fields["battery_percent"] == 87.0
    for reading in home.readings:
        for name in reading.fields:
            assert drivers.field_category("homekit", name) is not None, name
    assert drivers.field_category("homekit", "serial_number") == "device.network"
    assert home.registry.get(device).online  # type: ignore[union-attr]

    # Unpair: the accessory drops the pairing too, and is free to pair elsewhere.
    answer = await ask(home, "unpair", transaction="6", device=device)
    assert answer["status"] == "ok", answer
    assert answer["data"] == {"device": device, "erased": True, "released": True}
    assert not accessory.is_paired()
    assert await home.pairings.load() == {}
    count = len(home.readings)
    accessory.temperature = 30.0
    await asyncio.sleep(5 * accessory.interval_s)  # five event intervals: nothing collected
    assert len(home.readings) == count
    await wait_for(lambda: home.registry.get(device) is not None, 10)  # listed again
    assert not home.registry.is_paired(device)


async def test_a_right_code_refused_once_is_tried_again_and_pairs(home: HomeHub) -> None:
    # An accessory whose SRP does not pad its values refuses the right code now and then.
    async with SimulatedAccessory(refuse_right_code=1) as accessory:
        device = await listed(home, accessory)
        answer = await ask(home, "pair", transaction="1", device=device, setup_code=SETUP_CODE)
        assert answer["status"] == "ok", answer
        assert accessory.is_paired()
        assert accessory.pair_setups == 2
        assert home.counters.get("homekit.pair_setup_retried") == 1
        assert home.counters.get("homekit.errors.bad_setup_code") == 0
        await ask(home, "unpair", transaction="2", device=device)


async def test_a_code_refused_twice_is_answered_refused_and_nothing_is_paired(
    home: HomeHub,
) -> None:
    async with SimulatedAccessory(refuse_right_code=2) as accessory:
        device = await listed(home, accessory)
        answer = await ask(home, "pair", transaction="1", device=device, setup_code=SETUP_CODE)
        assert answer["status"] == "error", answer
        assert answer["error"]["code"] == "invalid_request"
        assert "refused the setup code" in answer["error"]["message"]
        assert accessory.pair_setups == 2  # tried once more, not more
        assert not accessory.is_paired()
        assert not home.registry.is_paired(device)
        assert home.counters.get("homekit.errors.bad_setup_code") == 1

        # The user asks again: this time the accessory takes the code.
        answer = await ask(home, "pair", transaction="2", device=device, setup_code=SETUP_CODE)
        assert answer["status"] == "ok", answer
        await ask(home, "unpair", transaction="3", device=device)


async def test_wrong_codes_are_answered_refused_until_the_accessory_pauses_then_busy(
    home: HomeHub, accessory: SimulatedAccessory
) -> None:
    # HAP-python pauses pair-setup for 60 s after 5 failed proofs in a row; each wrong code
    # costs two, so the third one's second try meets the pause: still answered as refused.
    device = await listed(home, accessory)
    for n in range(3):
        answer = await ask(home, "pair", transaction=f"{n}", device=device, setup_code="111-22-333")
        assert answer["error"]["code"] == "invalid_request", answer
        assert "refused the setup code" in answer["error"]["message"]
    assert accessory.pair_setups == 5  # the sixth met the pause before it started
    answer = await ask(home, "pair", transaction="right", device=device, setup_code=SETUP_CODE)
    assert answer["error"]["code"] == "busy", answer
    assert "wrong setup codes" in answer["error"]["message"]
    assert not accessory.is_paired()


def temperature(served: Database, perms: object) -> Database:
    """Serve CurrentTemperature with ``perms``."""
    for service in served["services"]:
        for char in service["characteristics"]:
            if short_type(char["type"]) == "11":
                char["perms"] = perms
    return served


def service_type_not_a_uuid(served: Database) -> Database:
    """Serve a service whose type is a number."""
    served["services"][-1]["type"] = 5
    return served


async def test_a_characteristic_that_sends_no_events_is_not_collected(home: HomeHub) -> None:
    async with SimulatedAccessory(database=lambda db: temperature(db, ["pr"])) as accessory:
        device = await listed(home, accessory)
        answer = await ask(home, "pair", transaction="1", device=device, setup_code=SETUP_CODE)
        assert answer["status"] == "ok", answer
        accessory.humidity = 43.0
        await wait_for(lambda: any(r.fields.get("humidity_percent") == 43.0 for r in home.readings))
        assert all("temperature_c" not in r.fields for r in home.readings)
        await ask(home, "unpair", transaction="2", device=device)


@pytest.mark.parametrize(
    "database", [service_type_not_a_uuid, lambda db: temperature(db, 1.0)], ids=["type", "perms"]
)
async def test_an_unreadable_accessory_database_is_refused_cleanly(
    home: HomeHub, caplog: pytest.LogCaptureFixture, database: Callable[[Database], Database]
) -> None:
    async with SimulatedAccessory(database=database) as accessory:
        device = await listed(home, accessory)
        answer = await ask(home, "pair", transaction="1", device=device, setup_code=SETUP_CODE)
        assert answer["status"] == "error", answer
        # not internal (the accessory's fault), nor busy (asking again changes nothing)
        assert answer["error"]["code"] == "invalid_request"
        assert "cannot read" in answer["error"]["message"]
        assert not home.registry.is_paired(device)
        assert not accessory.is_paired()  # the pairing made is removed on the accessory too
        assert await home.pairings.load() == {}
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_an_accessory_paired_with_another_controller(
    home: HomeHub, accessory: SimulatedAccessory, tmp_path: Path, mdns_config: MdnsConfig
) -> None:
    async with open_hub(tmp_path / "other", mdns_config, os.urandom(32), os.urandom(32)) as other:
        mine, theirs = (h.registry.pseudonym(accessory.device_id) for h in (home, other))
        await wait_for(lambda: other.registry.get(theirs) is not None, 10)
        await wait_for(lambda: home.registry.get(mine) is not None, 10)
        answer = await ask(other, "pair", transaction="1", device=theirs, setup_code=SETUP_CODE)
        assert answer["status"] == "ok", answer

        # The accessory refuses a second controller: the user is told what to do.
        answer = await ask(home, "pair", transaction="2", device=mine, setup_code=SETUP_CODE)
        assert answer["status"] == "error", answer
        assert answer["error"]["code"] == "invalid_request"
        message = answer["error"]["message"]
        assert "already paired with another controller" in message
        assert "remove that pairing or reset the accessory" in message
        assert not home.registry.is_paired(mine)

        # That pairing removed, the accessory pairs with this hub.
        await ask(other, "unpair", transaction="3", device=theirs)
        answer = await ask(home, "pair", transaction="4", device=mine, setup_code=SETUP_CODE)
        assert answer["status"] == "ok", answer
        await ask(home, "unpair", transaction="5", device=mine)
