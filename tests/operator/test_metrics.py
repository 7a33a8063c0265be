"""Metrics: the hub's health in Prometheus text format in a node_exporter textfile, replaced
atomically; parsed by prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
    assert reads > 5
    assert [p.name for p in collector.iterdir()] == ["consentgate.prom"]  # no temporary left


def test_render_reads_new_health_fields_tolerantly() -> None:
    health = {
        "connected": False,
        "outbox": {"rows": 3, "bytes": 900},
        "devices": {"paired": 2, "online": 1},
        "counters": {'dropped."odd"\\name': 4, "purged.health": 2},
        "clock": {"synchronised": True, "offset_s": -0.25},
        "storage": {"free_bytes": 1_000_000, "state": "ok"},
    }
    parsed = samples(render(health, "hub-1"))
    hub = ("hub", "hub-1")
    assert parsed[("consentgate_broker_connected", (hub,))] == 0
    assert parsed[("consentgate_devices", (hub, ("state", "online")))] == 1
    assert parsed[("consentgate_events_total", (hub, ("name", 'dropped."odd"\\name')))] == 4
    assert parsed[("consentgate_clock_synchronised", (hub,))] == 1
    assert parsed[("consentgate_clock_offset_s", (hub,))] == -0.25
    assert parsed[("consentgate_storage_free_bytes", (hub,))] == 1_000_000
    assert ("consentgate_storage_state", (hub,)) not in parsed  # text is not a number
    assert ("consentgate_epoch", (hub,)) not in parsed  # absent fields are left out


def test_textfile_must_be_a_prom_file(tmp_path: Path) -> None:
    raw = {"hub_id": "h", "state_dir": "s", "metrics": {"textfile": "metrics.txt"}}
    with pytest.raises(ConfigError, match=r"metrics.textfile: .* must end in .prom"):
        parse_config(raw, tmp_path)
    raw = {"hub_id": "h", "state_dir": "s", "homeassistant": {"enabled": "yes"}}
    with pytest.raises(ConfigError, match=r"homeassistant\.enabled"):
        parse_config(raw, tmp_path)
