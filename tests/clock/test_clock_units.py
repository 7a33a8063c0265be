"""HubClock trust and hub time, the ClockGate's hold and re-basing (real sealer and consumer
library), marked epochs for what is sealed before the clock is trusted, deferred rotation,
audit time findings, the [clock] config and the sync sources."""

from __future__ import annotations

import logging
from pathlib import Path

import aiosqlite
import pytest

from gateway.audit.log import AuditLog
from gateway.clock import BUILD_FLOOR, HubClock, sync_source
from gateway.clockgate import ClockGate
from gateway.config import parse_config
from gateway.counters import Counters
from gateway.envelope.consumer import OpenedRecord as Opened
from gateway.envelope.format import parse_announcement
from gateway.envelope.sealer import Sealer
from gateway.errors import ConfigError
from gateway.model import EPOCH_CATEGORY, Observation, OutboxRow
from gateway.storage.db import open_database
from tests.envelope.envelope_helpers import HUB_ID, World

NOW = BUILD_FLOOR + 300 * 86400.0
DEVICE = "0123456789abcdef"


class Clocks:
    """A faked wall clock and a faked monotonic clock, moved by the test."""

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.mono = 1000.0

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def make_clock(clocks: Clocks, synced: bool = True, service: bool = True) -> HubClock:
    return HubClock(
        wall=lambda: clocks.wall, mono=lambda: clocks.mono, source=lambda: (synced, service)
    )


def test_untrusted_before_the_floor_then_anchored_and_steady() -> None:
    clocks = Clocks(100.0)  # booted at 1970
    clock = make_clock(clocks)
    assert (clock.check(), clock.anchored, clock.synced) == (False, False, False)
    clocks.tick(5)
    assert clock.lower_bound() == BUILD_FLOOR + 5  # never past the true time
    clocks.wall = NOW  # NTP
    assert (clock.check(), clock.anchored, clock.synced) == (True, True, True)
    assert clock.state().label == "synced"
    clocks.tick(10)
    clocks.wall -= 365 * 86400  # a year back: not followed
    assert (clock.check(), clock.synced) == (True, False)
    assert clock.now() == pytest.approx(NOW + 10)
    clocks.wall += 2 * 365 * 86400  # a year ahead: not followed either
    clock.check()
    assert clock.now() == pytest.approx(NOW + 10)
    assert clock.lower_bound() == clock.now()


def test_an_untrusted_clock_at_boot_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clocks = Clocks(100.0)
    clock = make_clock(clocks)
    with caplog.at_level(logging.INFO, logger="gateway.clock"):
        clock.check()
        clocks.tick(1)
        clock.check()
    assert [r.getMessage() for r in caplog.records] == ["clock unsynced"]


def test_a_running_time_sync_service_must_report_sync() -> None:
    clocks = Clocks(NOW)
    assert not make_clock(clocks, synced=False, service=True).check()
    assert make_clock(clocks, synced=False, service=False).check()  # no service: the floor
    strict = HubClock(
        require_sync="yes", wall=lambda: NOW, mono=lambda: 0.0, source=lambda: (False, False)
    )
    assert not strict.check()


def test_sync_sources(tmp_path: Path) -> None:
    marker, service = tmp_path / "synchronized", tmp_path / "timesync"
    assert sync_source(lambda: None, marker, (service,)) == (False, False)
    service.mkdir()
    assert sync_source(lambda: False, marker, (service,)) == (False, True)
    marker.touch()
    assert sync_source(lambda: False, marker, (service,)) == (True, True)


async def test_the_floor_persists_and_distrusts_a_clock_set_back(tmp_path: Path) -> None:
    db = await open_database(tmp_path)
    try:
        clocks = Clocks(NOW + 86400)
        clock = make_clock(clocks, service=False)
        clock.check()
        await clock.save(db)
        again = make_clock(Clocks(NOW), service=False)  # restarted with a clock a day behind
        await again.load(db)
        assert again.floor == pytest.approx(NOW + 86400)
        assert not again.check()
    finally:
        await db.close()


def observations(ts: float, count: int = 3) -> list[Observation]:
    return [Observation(DEVICE, "telemetry.environment", ts, {"t": i}) for i in range(count)]


def test_gate_holds_until_anchored_then_seals_rebased_under_a_trusted_epoch() -> None:
    clocks = Clocks(100.0)
    clock = make_clock(clocks)
    clock.check()
    world = World()
    world.clock.now = NOW
    sealer = world.sealer()
    counters = Counters()
    gate = ClockGate(
        sealer, clock, counters, max_held=100, wall=lambda: clocks.wall, mono=lambda: clocks.mono
    )
    assert not gate.due(clocks.mono)
    assert gate.seal_batch(observations(clocks.wall), lambda _: 60.0) == []
    assert gate.held == 3
    clocks.tick(30)
    assert gate.seal_held(lambda _: 60.0) == []  # still untrusted: they wait
    clocks.wall = NOW
    clock.check()
    rows = gate.seal_held(lambda _: 60.0)
    consumer = world.consumer()
    consumer.accept_announcement(rows[0].payload)
    opened = [consumer.open(r.topic, r.payload) for r in rows[1:]]
    assert [r.ts for r in opened] == [pytest.approx(NOW - 30)] * 3  # read 30 s before the sync
    assert gate.held == 0
    assert "clock.sealed_unsynced" not in counters.snapshot()


def _opened_by_a_consumer_at_the_true_time(world: World, rows: list[OutboxRow]) -> list[Opened]:
    """Open ``rows`` (announcements first, in order) as a consumer would at ``NOW``."""
    world.clock.now = NOW
    consumer = world.consumer()
    opened: list[Opened] = []
    for row in rows:
        if row.category == EPOCH_CATEGORY:
            consumer.accept_announcement(row.payload)
        else:
            opened.append(consumer.open(row.topic, row.payload))
    return opened


def _gate_booted_at_1970(max_held: int) -> tuple[Clocks, HubClock, World, ClockGate, Counters]:
    """A gate whose hub booted at 1970 on a fresh install (floor: the build date), 300 days
    before the true time ``NOW``."""
    clocks = Clocks(100.0)
    clock = make_clock(clocks)
    clock.check()
    world = World()
    sealer = Sealer(  # dating announcements and rows in hub time, as the daemon wires it
        hub_id=HUB_ID,
        topic_root=world.topic_root,
        signing_key=world.hub_key,
        recipient=world.recipient.public_key(),
        alg=world.alg,
        clock=clock.now,
        monotonic=lambda: clocks.mono,
    )
    counters = Counters()
    gate = ClockGate(
        sealer,
        clock,
        counters,
        max_held=max_held,
        wall=lambda: clocks.wall,
        mono=lambda: clocks.mono,
    )
    return clocks, clock, world, gate, counters


def test_gate_overflow_and_stop_seal_under_marked_epochs_the_consumer_opens() -> None:
    clocks, _, world, gate, counters = _gate_booted_at_1970(max_held=4)
    assert gate.seal_batch(observations(clocks.wall), lambda _: 60.0) == []
    clocks.tick(2)
    rows = gate.seal_batch(observations(clocks.wall), lambda _: 60.0)  # 6 > 4: oldest sealed
    assert len(rows) == 1 + 3
    assert gate.held == 3
    clocks.tick(2)
    rows += gate.seal_held(lambda _: 60.0, force=True)  # a graceful stop before any sync
    assert len(rows) == 1 + 3 + 3
    assert counters.snapshot()["clock.sealed_unsynced"] == 6
    assert parse_announcement(rows[0].payload).core.estimated
    # a consumer at the true time, 300 days after the hub's estimate, opens every record
    opened = _opened_by_a_consumer_at_the_true_time(world, rows)
    assert len(opened) == 6
    assert all(r.ts_estimated for r in opened)
    assert [r.ts for r in opened] == pytest.approx([BUILD_FLOOR] * 3 + [BUILD_FLOOR + 2] * 3)
    # their time to live counts from when they arrived, not from when they were sealed
    records = [r for r in rows if r.category != EPOCH_CATEGORY]
    assert [r.expires for r in records][3:] == pytest.approx([BUILD_FLOOR + 2 + 60] * 3)


def test_keys_rotate_before_the_anchor_is_deferred_to_the_first_seal_after_it() -> None:
    clocks, clock, world, gate, _ = _gate_booted_at_1970(max_held=100)
    assert (gate.defer_rotation("command"), gate.deferred) == (True, "command")
    assert gate.seal_held(lambda _: 60.0) == []  # nothing happens before the anchor
    clocks.tick(5)
    clocks.wall = NOW
    clock.check()
    rows = gate.seal_held(lambda _: 60.0)  # the next pipeline tick
    assert [r.category for r in rows] == [EPOCH_CATEGORY]
    assert not parse_announcement(rows[0].payload).core.estimated
    assert parse_announcement(rows[0].payload).core.not_before == int(NOW)
    assert gate.deferred is None
    assert not gate.defer_rotation("command")  # anchored: keys/rotate rotates at once
    assert _opened_by_a_consumer_at_the_true_time(world, rows) == []


def test_released_readings_live_their_ttl_from_when_they_arrived() -> None:
    clocks, clock, world, gate, _ = _gate_booted_at_1970(max_held=100)
    gate.seal_batch(observations(clocks.wall), lambda _: 60.0)
    clocks.tick(40)
    clocks.wall = NOW
    clock.check()
    rows = gate.seal_held(lambda _: 60.0)
    records = [r for r in rows if r.category != EPOCH_CATEGORY]
    assert [r.created for r in records] == pytest.approx([NOW - 40] * 3)
    assert [r.expires for r in records] == pytest.approx([NOW + 20] * 3)  # not NOW + 60
    opened = _opened_by_a_consumer_at_the_true_time(world, rows)
    assert [r.ts for r in opened] == pytest.approx([NOW - 40] * 3)
    assert not any(r.ts_estimated for r in opened)


def test_gate_rebases_readings_queued_across_a_step() -> None:
    clocks = Clocks(100.0)
    clock = make_clock(clocks)
    clock.check()
    read_at = clocks.wall
    clocks.tick(0.5)
    clocks.wall = NOW
    clock.check()
    world = World()
    world.clock.now = NOW
    gate = ClockGate(
        world.sealer(), clock, Counters(), wall=lambda: clocks.wall, mono=lambda: clocks.mono
    )
    rows = gate.seal_batch(observations(read_at, 1), lambda _: 60.0)
    consumer = world.consumer()
    consumer.accept_announcement(rows[0].payload)
    assert consumer.open(rows[1].topic, rows[1].payload).ts == pytest.approx(NOW - 0.5)


async def test_audit_reports_time_running_backwards_as_a_finding(tmp_path: Path) -> None:
    now = [NOW]
    trusted = [True]
    async with aiosqlite.connect(tmp_path / "audit.db") as db:
        log = AuditLog(db, clock=lambda: now[0], trusted=lambda: trusted[0])
        await log.load()
        await log.append("a")
        now[0] -= 365 * 86400
        trusted[0] = False
        await log.append("b")
        report = await log.report(None)
        tail = await log.tail(2)
    assert report.intact
    assert [f.seq for f in report.findings] == [1]
    assert "backwards" in report.findings[0].problem
    assert report.to_json()["findings"][0]["seq"] == 1
    assert tail[1].details == {"clock": "unsynced"}
    assert tail[0].details == {}


def test_clock_config() -> None:
    base = {"hub_id": "h", "state_dir": "/tmp/x"}
    assert parse_config(base, Path("/")).clock.require_sync == "auto"
    config = parse_config({**base, "clock": {"require_sync": "yes"}}, Path("/"))
    assert config.clock.require_sync == "yes"
    with pytest.raises(ConfigError, match=r"clock\.require_sync"):
        parse_config({**base, "clock": {"require_sync": "maybe"}}, Path("/"))
