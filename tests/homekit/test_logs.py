"""HomeKit at DEBUG: the hub's log lines (as the daemon writes them) carry pseudonyms only, never
the accessory's HAP id, address, information strings, setup code, pairing keys or values;
aiohomekit, which logs HAP requests and answers at DEBUG, is held at WARNING."""

from __future__ import annotations

import io
import json
import re

from drivers.homekit.simulator import SETUP_CODE, SimulatedAccessory
from tests.devices.helpers import wait_for

from .conftest import HomeHub, listed
from .test_pairing import ask

WRONG_CODE = "111-22-333"


def forms(value: str) -> set[str]:
    """Return the spellings of an identifier or code a log line could carry."""
    bare = re.sub(r"[:-]", "", value)
    return {value, value.lower(), value.upper(), bare.lower(), bare.upper()}


def leaks(line: str, secrets: set[str]) -> list[str]:
    """Return the secrets in ``line`` as whole tokens (not inside longer words or numbers)."""
    return sorted(s for s in secrets if re.search(r"(?<![\w.])" + re.escape(s) + r"(?![\w])", line))


async def test_pairing_events_and_unpair_log_pseudonyms_only(
    json_logs: io.StringIO, home: HomeHub, accessory: SimulatedAccessory
) -> None:
    device = await listed(home, accessory)
    wrong = await ask(home, "pair", transaction="1", device=device, setup_code=WRONG_CODE)
    assert wrong["error"]["code"] == "invalid_request", wrong
    answer = await ask(home, "pair", transaction="2", device=device, setup_code=SETUP_CODE)
    assert answer["status"] == "ok", answer
    keys = (await home.pairings.load())[device]
    accessory.temperature, accessory.humidity = 26.5, 47.0
    await wait_for(lambda: any(r.fields.get("temperature_c") == 26.5 for r in home.readings))
    await wait_for(lambda: any(r.fields.get("humidity_percent") == 47.0 for r in home.readings))
    answer = await ask(home, "unpair", transaction="3", device=device)
    assert answer["data"]["released"] is True, answer

    entries = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    # The accessory (HAP-python, in this process for the test) is another device: its own
    # logs are not the hub's.
    ours = [e for e in entries if not e["component"].startswith("pyhap")]
    assert any(e["level"] == "debug" for e in ours)
    assert not [e for e in ours if e["component"].startswith("aiohomekit")]
    lines = [json.dumps({k: v for k, v in e.items() if k != "ts"}) for e in ours]
    assert any(device in line for line in lines)

    secrets = forms(accessory.device_id) | forms(SETUP_CODE) | forms(WRONG_CODE)
    secrets |= {"127.0.0.1", "Acme", "T1000", "SN42", "Thermo", "26.5", "47.0"}
    secrets |= {str(keys[k]) for k in ("iOSPairingId", "iOSDeviceLTSK", "iOSDeviceLTPK")}
    secrets |= {str(keys["AccessoryLTPK"]), str(keys["AccessoryPort"])}
    for line in lines:
        assert not leaks(line, secrets), line
