"""The inventory's TXT parsers on records as each family publishes them, and fuzzed."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.lan.inventory import BY_TYPE, INVENTORY, parse_listing
from drivers.lan.simulator import sample_txt
from gateway.errors import DeviceError


def raw(txt: Mapping[str, str | None]) -> dict[bytes, bytes | None]:
    """Return a TXT record as zeroconf hands it over (bytes keys and values)."""
    return {k.encode(): None if v is None else v.encode() for k, v in txt.items()}


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("googlecast", ("7d1c3a9e1f2b4c5d8e9f0a1b2c3d4e5f", "Chromecast", "05", "Living Room TV")),
        ("esphome", ("a4cf12b3c4d5", "esp32dev", "2024.6.1", "Kitchen sensor")),
        ("matter", ("5f3a1b2c3d4e5f60", "Matter device", None, "Smart Plug")),
        ("hue", ("001788fffe1a2b3c", "BSB002", None, "Philips Hue - 1A2B3C")),
    ],
)
def test_published_records(family: str, expected: tuple[str, str, str | None, str]) -> None:
    service_type, instance, txt = sample_txt()[family]
    found = parse_listing(service_type, instance, raw(txt))
    assert found.family == family
    assert (found.stable_id, found.model, found.firmware, found.name) == expected


def test_details_and_mac() -> None:
    esphome = parse_listing(*sample_txt()["esphome"][:2], raw(sample_txt()["esphome"][2]))
    assert esphome.mac == "A4:CF:12:B3:C4:D5"
    assert dict(esphome.details) == {"platform": "ESP32", "board": "esp32dev", "network": "wifi"}
    matter = parse_listing(*sample_txt()["matter"][:2], raw(sample_txt()["matter"][2]))
    assert dict(matter.details) == {
        "vendor_id": "4874", "product_id": "77", "device_type": "266", "commissioning_mode": "1"
    }  # fmt: skip


def test_homekit_wled_shelly_matter_operational() -> None:
    hap = {"md": "Thermo", "pv": "1.1", "id": "3E:87:08:1E:EA:F7", "c#": "2", "s#": "1",
           "ff": "0", "ci": "10", "sf": "1", "sh": "UqIQDg=="}  # fmt: skip
    found = parse_listing("_hap._tcp.local.", "Thermo 1EEAF7", raw(hap))
    assert (found.stable_id, found.model) == ("3e:87:08:1e:ea:f7", "Thermo")
    assert dict(found.details)["category"] == "sensor"
    assert dict(found.details)["accepts_pairing"] == "yes"
    wled = parse_listing("_wled._tcp.local.", "wled-b3c4d5", raw({"mac": "a4cf12b3c4d5"}))
    assert (wled.stable_id, wled.mac) == ("a4cf12b3c4d5", "A4:CF:12:B3:C4:D5")
    shelly = parse_listing(
        "_shelly._tcp.local.", "shellyplus1pm-a8032ab12345",
        raw({"gen": "2", "app": "Plus1PM", "ver": "1.0.0"}),
    )  # fmt: skip
    assert (shelly.stable_id, shelly.model) == ("shellyplus1pm-a8032ab12345", "Plus1PM")
    node = parse_listing("_matter._tcp.local.", "A1B2C3D4E5F60718-0000000000000001", {})
    assert node.stable_id == "a1b2c3d4e5f60718-0000000000000001"


@pytest.mark.parametrize(
    ("service_type", "instance", "txt", "reason"),
    [
        ("_googlecast._tcp.local.", "x", {"md": "Chromecast"}, "missing_property"),
        ("_googlecast._tcp.local.", "x", {"id": "not-hex"}, "bad_txt"),
        ("_esphomelib._tcp.local.", "x", {"mac": "zz"}, "bad_txt"),
        ("_matterc._udp.local.", "short", {}, "bad_txt"),
        ("_matterc._udp.local.", "5F3A1B2C3D4E5F60", {"VP": "99999999+1"}, "bad_txt"),
        ("_hue._tcp.local.", "x", {"bridgeid": "001788fffe1a2b3c"}, "missing_property"),
        ("_hap._tcp.local.", "x", {"id": "3E:87:08:1E:EA:F7", "md": "T"}, "missing_property"),
        ("_hap._tcp.local.", "x", {"id": "3E:87", "md": "T", "c#": "1"}, "bad_txt"),
        ("_wled._tcp.local.", "x", {}, "missing_property"),
        ("_unknown._tcp.local.", "x", {}, "unsupported"),
    ],
)
def test_malformed_records(
    service_type: str, instance: str, txt: dict[str, str | None], reason: str
) -> None:
    with pytest.raises(DeviceError) as caught:
        parse_listing(service_type, instance, raw(txt))
    assert caught.value.reason == reason


def test_table_is_declared_once_per_type() -> None:
    assert len(BY_TYPE) == len(INVENTORY)
    assert {k.family for k in INVENTORY} == {
        "googlecast", "esphome", "matter", "hue", "wled", "shelly", "homekit"
    }  # fmt: skip


_keys = st.sampled_from(
    [b"id", b"md", b"fn", b"ve", b"mac", b"version", b"board", b"platform", b"vp", b"dt",
     b"dn", b"cm", b"bridgeid", b"modelid", b"c#", b"sf", b"ci", b"pv", b"gen", b"app", b"ver"]
) | st.binary(max_size=12)  # fmt: skip
_values = st.none() | st.binary(max_size=40) | st.sampled_from(
    [b"7d1c3a9e1f2b4c5d8e9f0a1b2c3d4e5f", b"a4cf12b3c4d5", b"3E:87:08:1E:EA:F7", b"2",
     b"4874+77", b"001788fffe1a2b3c", b"", b"\xff\xfe"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(INVENTORY),
    instance=st.text(max_size=70),
    txt=st.dictionaries(_keys, _values, max_size=10),
)
def test_fuzzed_records_parse_or_fail_cleanly(
    kind: object, instance: str, txt: dict[bytes, bytes | None]
) -> None:
    service_type = kind.service_type  # type: ignore[attr-defined]
    try:
        found = parse_listing(service_type, instance, txt)
    except DeviceError as exc:
        reason = exc.reason
        assert reason in {"bad_txt", "missing_property"}
        return
    assert found.stable_id
    assert found.name is None or (len(found.name) <= 64 and found.name.isprintable())
