"""Metrics: the hub's health in Prometheus text format in a node_exporter textfile, replaced
atomically; parsed by prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.metrics.textfile import render
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of ``text`` by (name, sorted labels), through prometheus_client."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_textfile_written_atomically(broker: Mosquitto, tmp_path: Path) -> None:
    collector = tmp_path / "textfile-collector"
    collector.mkdir()
    path = collector / "consentgate.prom"
    config = hub_config(
        tmp_path,
        broker.port,
        "metrics-hub",
        simulator={"devices": 2, "rate_hz": 20.0},
        metrics={"textfile": str(path), "interval_s": 0.05},
    )
    async with running_hub(config) as hub:
        await eventually(path.exists, what="metrics file written")
        await eventually(hub.link.connected.is_set, what="connected")
        hub_label = ("hub", "metrics-hub")
        reads = 0
        deadline = asyncio.get_running_loop().time() + 1.0
        while asyncio.get_running_loop().time() < deadline:  # read while the hub rewrites it
            text = await asyncio.to_thread(path.read_text)
            parsed = samples(text)  # a half-written file would fail to parse or miss lines
            assert parsed[("consentgate_up", (hub_label,))] == 1
            assert ("consentgate_outbox_rows", (hub_label,)) in parsed
            reads += 1
        await eventually(
            lambda: (
                samples(path.read_text()).get(("consentgate_broker_connected", (hub_label,))) == 1
            ),
            what="connected in the metrics",
        )
        parsed = samples(path.read_text())
        committed = parsed[("consentgate_committed_total", (hub_label,))]
        assert committed == pytest.approx(hub.pipeline.committed, abs=200)
        assert parsed[("consentgate_uptime_seconds", (hub_label,))] >= 0
        health = hub.health()
        synced = 1 if health["clock"] == "synced" else 0
        assert parsed[("consentgate_clock_synced", (hub_label,))] == synced
        assert parsed[("consentgate_clock_held", (hub_label,))] == health["clock_held"]
        assert health["storage"]["state"] == "ok"
        assert parsed[("consentgate_storage_ok", (hub_label,))] == 1
        assert parsed[("consentgate_storage_faults", (hub_label,))] == 0
    assert reads > 5
    assert [p.name for p in collector.iterdir()] == ["consentgate.prom"]  # no temporary left


async def test_clock_and_storage_states_become_numbers(broker: Mosquitto, tmp_path: Path) -> None:
    """The health report's clock and storage states are text; the metrics make 1/0 of them."""
    config = hub_config(tmp_path, broker.port, "metrics-states", simulator={"devices": 1})
    async with running_hub(config) as hub:
        health = hub.health()
    hub_label = (("hub", "metrics-states"),)
    assert isinstance(health["clock"], str)
    assert isinstance(health["storage"]["state"], str)

    def metric(report: dict[str, Any], name: str) -> float | None:
        return samples(render(report, "metrics-states")).get((f"consentgate_{name}", hub_label))

    assert metric({**health, "clock": "synced", "clock_held": 0}, "clock_synced") == 1
    unsynced = {**health, "clock": "unsynced", "clock_held": 12}
    assert metric(unsynced, "clock_synced") == 0
    assert metric(unsynced, "clock_held") == 12
    assert metric(health, "storage_ok") == 1
    faulty = {
        **health,
        "storage": {**health["storage"], "state": "full", "faults": 3, "for_s": 9.5},
    }
    assert metric(faulty, "storage_ok") == 0
    assert metric(faulty, "storage_faults") == 3
    assert metric(faulty, "storage_for_s") == 9.5
    assert metric(faulty, "storage_changes_pending") == health["storage"]["changes_pending"]
    parsed = samples(render(faulty, "metrics-states"))
    assert ("consentgate_storage_state", hub_label) not in parsed  # text is not a number
    odd = {**health, "counters": {**health["counters"], 'dropped."odd"\\name': 4}}
    parsed = samples(render(odd, "metrics-states"))
    odd_label = (*hub_label, ("name", 'dropped."odd"\\name'))
    assert parsed[("consentgate_events_total", odd_label)] == 4  # labels escaped, read back
    online = (*hub_label, ("state", "online"))
    assert parsed[("consentgate_devices", online)] == health["devices"]["online"]
    del health["epoch"]
    assert metric(health, "epoch") is None  # absent fields are left out


def test_textfile_must_be_a_prom_file(tmp_path: Path) -> None:
    raw = {"hub_id": "h", "state_dir": "s", "metrics": {"textfile": "metrics.txt"}}
    with pytest.raises(ConfigError, match=r"metrics.textfile: .* must end in .prom"):
        parse_config(raw, tmp_path)
    raw = {"hub_id": "h", "state_dir": "s", "homeassistant": {"enabled": "yes"}}
    with pytest.raises(ConfigError, match=r"homeassistant\.enabled"):
        parse_config(raw, tmp_path)
