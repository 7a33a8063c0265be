"""The disclosure, generated from a running hub's live state: over MQTT (`ctl disclose`) and
from the state directory (`consentgate disclosure`), in text, Markdown and HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from gateway.envelope.keys import load_recipient_public, recipient_kid
from tests.operator.helpers import cli, ctl, write_config
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


def sentence(text: str, device: str, category: str) -> str:
    """Return the sentence about ``category`` in ``device``'s section (one line in Markdown)."""
    section = text.split(f"## device {device}")[1].split("\n## ", maxsplit=1)[0]
    lines = [line for line in section.splitlines() if f"\\[{category}\\]" in line]
    assert len(lines) == 1, section
    return lines[0].replace("\\", "")


async def test_disclosure_follows_the_live_state(broker: Mosquitto, tmp_path: Path) -> None:
    hub_id = "disclose-hub"
    config = hub_config(tmp_path, broker.port, hub_id, simulator={"devices": 2, "rate_hz": 2.0})
    toml = write_config(tmp_path, broker.port, hub_id)
    rkid = recipient_kid(load_recipient_public(tmp_path / "recipient" / "recipient.pub")).hex()
    async with running_hub(config) as hub:
        await eventually(hub.link.connected.is_set, what="hub connected")
        first, second = sorted(hub.simulated)
        for argv in (
            ("consent", "set", "health", "coarse"),
            ("consent", "set", "telemetry", "off"),
            ("consent", "set", "location", "on", "--device", first),
        ):
            assert (await ctl(broker.port, hub_id, *argv)).code == 0
        seqs = {e.details.get("flag"): e.seq for e in await hub.audit.tail(10)}
        shown = await ctl(broker.port, hub_id, "disclose", "--format", "markdown")
        assert shown.code == 0, shown.err
        md = shown.out
        assert md.startswith(f"# What hub {hub_id} collects")
        assert f"recipient key {rkid}" in md

        location = sentence(md, first, "location.precise")
        assert "collected and sent as measured, sealed" in location
        assert f"set by the command consent/set (audit entry {seqs['location']})" in location
        assert "not collected; consent 'location' is off by default" in sentence(
            md, second, "location.precise"
        )
        health = sentence(md, second, "health")
        assert "fields: heart_rate, steps, weight" in health
        assert "only as minimum, mean and maximum per 5 minutes" in health
        assert "consent 'health' is coarse since" in health
        assert f"(audit entry {seqs['health']})" in health
        assert "kept on the hub at most 7 days until sent" in health
        telemetry = sentence(md, first, "telemetry.environment")
        assert "not collected; consent 'telemetry' is off since" in telemetry
        assert "always collected for the service" in sentence(md, first, "device.basic")

        local = await cli("disclosure", "--config", str(toml), "--format", "markdown")
        assert local.code == 0, local.err
        as_of = re.compile(r"as of \S+ \S+ UTC")
        assert as_of.sub("", local.out) == as_of.sub("", md)  # same facts, same sentences

        page = await ctl(broker.port, hub_id, "disclose", "--format", "html")
        tags = Tags()
        tags.feed(page.out)
        assert tags.count["li"] == 2 * 5  # pairing, device.basic, 3 categories per device
        assert tags.open == []

        assert (await ctl(broker.port, hub_id, "try-now", "on")).code == 0
        text = " ".join((await ctl(broker.port, hub_id, "disclose")).out.split())
        assert "Try Now mode is on since" in text
        assert text.count("not collected while Try Now mode is on") == 2 * 3
        facts = json.loads((await ctl(broker.port, hub_id, "disclose", "--json")).out)
        assert facts["try_now"] is True
        assert {d["id"] for d in facts["devices"]} == {first, second}


class Tags(HTMLParser):
    """Counts elements and checks that every opened one is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.count: dict[str, int] = {}
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.count[tag] = self.count.get(tag, 0) + 1
        if tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open.pop() == tag


def test_sentences_come_from_the_facts() -> None:
    from gateway.consent.catalogue import CATEGORIES  # noqa: PLC0415
    from gateway.disclosure.model import DeviceFacts, DisclosureInputs  # noqa: PLC0415
    from gateway.disclosure.render import render  # noqa: PLC0415

    scale = DeviceFacts(
        "aa11bb22cc33dd44", "Bathroom <scale>", "scale", "ble", {"rssi": "device.network"}
    )
    inputs = DisclosureInputs(
        hub_id="home",
        generated_at=0.0,
        recipient=None,
        retention_s=dict.fromkeys(CATEGORIES, 3600.0),
        aggregate_window_s=90.0,
        flags={"network": "coarse"},
        overrides={},
        try_now=False,
        restricted=False,
        consent_version=1,
        devices=(scale,),
    )
    text = " ".join(render(inputs, "text").split())
    assert "No recipient key is configured, so nothing can be sent." in text
    assert "with identifiers replaced by keyed-hash pseudonyms" in text
    assert "kept on the hub at most 1 hour until sent" in text
    assert "consent 'network' is coarse (no change of it is in the audit log)" in text
    assert "Bathroom &lt;scale&gt;" in render(inputs, "html")  # names are escaped
    restricted = DisclosureInputs.from_json({**inputs.to_json(), "restricted": True})
    assert "not collected while the restriction is on" in " ".join(
        render(restricted, "text").split()
    )
    assert DisclosureInputs.from_json(inputs.to_json()) == inputs


def test_a_device_override_cites_the_devices_own_change() -> None:
    """A device with its own override cites the last change of that override; a device without
    one cites the last hub-wide change, never another device's override."""
    from gateway.consent.catalogue import CATEGORIES  # noqa: PLC0415
    from gateway.disclosure.model import ConsentEvent, DeviceFacts, DisclosureInputs  # noqa: PLC0415
    from gateway.disclosure.render import render  # noqa: PLC0415

    fields = {"lat": "location.precise"}
    own, other = "aa11bb22cc33dd44", "ee55ff6600778899"
    history = (
        ConsentEvent(7, 60.0, "consent.set", {"flag": "location", "state": "on", "device": own}),
        ConsentEvent(8, 120.0, "consent.set", {"flag": "location", "state": "off"}),
    )
    inputs = DisclosureInputs(
        hub_id="home",
        generated_at=180.0,
        recipient=None,
        retention_s=dict.fromkeys(CATEGORIES, 3600.0),
        aggregate_window_s=90.0,
        flags={"location": "off"},
        overrides={own: {"location": "on"}},
        try_now=False,
        restricted=False,
        consent_version=2,
        devices=(
            DeviceFacts(own, None, "tracker", "ble", fields),
            DeviceFacts(other, None, "tracker", "ble", fields),
        ),
        history=history,
    )
    md = render(inputs, "markdown")
    overridden = sentence(md, own, "location.precise")
    assert "collected and sent as measured" in overridden
    assert "consent 'location' is on since 1970-01-01 00:01 UTC" in overridden
    assert "(audit entry 7)" in overridden
    hub_wide = sentence(md, other, "location.precise")
    assert "consent 'location' is off since 1970-01-01 00:02 UTC" in hub_wide
    assert "(audit entry 8)" in hub_wide
