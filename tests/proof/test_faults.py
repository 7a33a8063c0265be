"""Short fault campaign: kill -9 of the broker and the daemon lose nothing; outages stay capped.

The same code as ``python -m bench.faults`` with small sizes. These tests check outcomes (no
record lost, caps held, overflow audited), never speed.
"""

from __future__ import annotations

from pathlib import Path

from bench.fault_kills import broker_kills, daemon_kills
from bench.fault_outage import compressed_outage


async def test_broker_kill9_cycles_lose_nothing_the_broker_had_not_acknowledged(
    tmp_path: Path,
) -> None:
    result = await broker_kills(tmp_path, 3)
    # Mosquitto saves after its PUBACK: a kill -9 in between loses records it acknowledged,
    # which QoS 1 makes the broker's; the hub loses none it still had to deliver
    assert result["lost"] == result["lost_after_puback"], result["lost_sample"]
    assert result["rejected"] == 0  # duplicates are only QoS 1 redeliveries the replay check drops
    assert result["held_unopened"] == 0
    assert result["outbox_left"] == 0
    assert result["hub_connects"] == 4
    assert result["opened"] > 0
    assert result["ok"], result


async def test_daemon_kill9_cycles_lose_nothing(tmp_path: Path) -> None:
    result = await daemon_kills(tmp_path, 2)
    assert result["lost"] == 0, result["lost_sample"]
    assert result["rejected"] == 0
    assert result["held_unopened"] == 0
    assert result["outbox_left"] == 0  # the final graceful stop drained everything
    assert result["epochs"] >= 3  # one per start
    assert result["ok"], result


async def test_compressed_outage_drop_oldest_stays_under_the_cap(tmp_path: Path) -> None:
    result = await compressed_outage(tmp_path, hours=0.1, max_rows=2_000)
    assert result["readings"] == 36_000
    assert result["max_rows_seen"] <= 2_000
    assert result["rows_on_disk"] <= 2_000
    assert result["audit_entries"] > 0
    assert result["audit_policies"] == ["drop_oldest"]
    assert result["audited_records"] == result["overflow_dropped"] > 30_000
    assert result["audit_chain_ok"]
    assert result["health_ok"]
    # the broker appears: the newest records arrive, each once, with no hole
    assert result["opened"] == result["backlog_records"] > 1_900
    assert result["holes"] == 0
    assert result["survivors_as_policy"]
    assert result["ok"], result


async def test_compressed_outage_reject_new_stays_under_the_cap(tmp_path: Path) -> None:
    result = await compressed_outage(tmp_path, hours=0.05, max_rows=3_000, policy="reject_new")
    assert result["max_rows_seen"] <= 3_000
    assert result["audit_policies"] == ["reject_new"]
    assert result["audited_records"] == result["overflow_rejected"] > 10_000
    assert result["opened"] == result["backlog_records"] > 0
    assert result["survivors_as_policy"]  # the oldest records, from the first seq
    assert result["sealed_not_kept"] == 0  # once full, readings are refused before sealing
    assert result["ok"], result
