"""The daemon: builds every component from one Config and runs them until told to stop.

Components are opened on one AsyncExitStack and their loops run in one TaskGroup. Stopping
(SIGTERM/SIGINT, or the ``stop`` event) is graceful: producers stop, queued readings are
committed, the publisher gets ``DRAIN_S`` to send what it can, the retained status turns
``offline``, and the database closes. A crash of any loop ends the daemon with an error (the
service manager restarts it); nothing committed is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.changes import Changes
from gateway.clock import HubClock
from gateway.clockgate import ClockGate
from gateway.commands.intake import open_intake
from gateway.commands.router import Router
from gateway.config import Config
from gateway.consent.policy import ConsentPolicy
from gateway.consent.store import load_policy_checked, persist_closed
from gateway.counters import Counters
from gateway.devices.model import UNPAIRED
from gateway.envelope.alg import choose_alg
from gateway.envelope.keys import hub_signing_key, load_recipient_public
from gateway.envelope.sealer import Sealer
from gateway.errors import ConfigError, StorageUnavailableError
from gateway.governance import install_governance
from gateway.mqtt.link import MqttLink
from gateway.mqtt.topics import Topics
from gateway.outbox.publisher import Publisher
from gateway.outbox.purger import Purger
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.pseudonym import Pseudonymizer
from gateway.storage.db import open_database, state_lost
from gateway.systemd import notify, watchdog_interval
from gateway.tasks import Loop, reraise_if_cancelling
from gateway.transports import DeviceParts, open_registry, open_transports

if TYPE_CHECKING:
    from gateway.devices.registry import DeviceRegistry

logger = logging.getLogger(__name__)

DRAIN_S: Final = 5.0


@dataclass(slots=True)
class Hub:
    """The composed daemon: every component, complete when built.

    Command modules see it only through Protocols of what they use (``HubHost``,
    ``ConsentHost``, ``RightsHost``, ``GovernanceHost``, ``DisclosureHost``); tests and the
    daemon's own entry points see all of it.
    """

    config: Config
    topics: Topics
    db: aiosqlite.Connection
    counters: Counters
    audit: AuditLog
    outbox: Outbox
    policy: ConsentPolicy
    pseudonyms: Pseudonymizer
    pipeline: Pipeline
    link: MqttLink
    publisher: Publisher
    router: Router
    sealer: Sealer
    purger: Purger
    changes: Changes
    clock: HubClock
    gate: ClockGate
    registry: DeviceRegistry
    simulated: set[str]  # the simulated devices' pseudonyms (erased ones taken out)
    known_device: Callable[[str], bool]  # whether a pseudonym is a paired or simulated device
    started: float = field(default_factory=time.monotonic)
    loops: dict[str, Loop] = field(default_factory=dict)

    def publish_devices_soon(self) -> None:
        """Queue the paired devices list for the retained devices topic (if connected)."""
        connection = self.link.connection
        if connection is not None:
            connection.send(
                self.topics.devices, _json(self.registry.devices()["paired"]), retain=True
            )

    def publish_consent_soon(self) -> None:
        """Queue the current consent state for the retained consent topic (if connected).

        Sent without waiting for the PUBACK, so an acknowledgement to the user never waits
        behind the bulk of records in flight.
        """
        connection = self.link.connection
        if connection is not None:
            connection.send(self.topics.consent, _json(self.policy.snapshot()), retain=True)

    def health(self) -> dict[str, Any]:
        """Return the health report published on ``<base>/health`` and by ``health``."""
        counters = self.counters.snapshot()
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "clock": self.clock.state().label,
            "clock_held": self.gate.held,
            "connected": self.link.connected.is_set(),
            "connects": self.link.connects,
            "epoch": self.sealer.epoch,
            "outbox": {
                "rows": self.outbox.rows,
                "bytes": self.outbox.bytes,
                "inflight": self.publisher.inflight,
                "queued": self.pipeline.queued,
                "unwritten": self.outbox.staged,
            },
            "storage": {**self.changes.health.report(), "changes_pending": self.changes.pending},
            "committed": self.pipeline.committed,
            "devices": self.registry.counts(),
            "counters": counters,
        }


async def build_hub(config: Config, stack: contextlib.AsyncExitStack) -> Hub:
    """Open storage and build every component of the hub (nothing runs yet)."""
    from drivers import field_category  # noqa: PLC0415 - driver registry loads entry points
    from drivers.simulator import device_ids  # noqa: PLC0415 - beside the driver registry

    state = config.state_dir
    lost = state_lost(state)
    db = await open_database(state)
    stack.push_async_callback(db.close)
    counters = Counters()
    # hub time and whether the wall clock is trusted (docs/clock.md): first, so every
    # timestamp below is in hub time
    clock = HubClock(require_sync=config.clock.require_sync)
    await clock.load(db)
    clock.check()
    audit = AuditLog(db, clock=clock.now, trusted=lambda: clock.synced)
    await audit.load()
    # retention expires by a time the true time is certainly past (never by a jumped clock)
    outbox = Outbox(db, config.outbox, counters, audit, clock=clock.lower_bound)
    await outbox.load()
    policy, problems = await load_policy_checked(db, state_lost=lost)
    if problems:
        await persist_closed(db, audit, policy, problems)
    pseudonyms = Pseudonymizer.from_state_dir(state)
    topics = Topics(config.topic_root)
    last_epoch, prev_hash = await outbox.last_epoch()
    if config.crypto.recipient_public_key is None:
        raise ConfigError(
            "crypto.recipient_public_key",
            "missing; run `consentgate keygen "
            "--out DIR` for the consumer and point this key at DIR/recipient.pub",
        )
    sealer = Sealer(
        hub_id=config.hub_id,
        topic_root=config.topic_root,
        signing_key=hub_signing_key(state),
        recipient=load_recipient_public(config.crypto.recipient_public_key),
        alg=choose_alg(config.crypto.alg),
        max_records=config.crypto.epoch_max_records,
        max_age_s=config.crypto.epoch_max_age_s,
        last_epoch=last_epoch,
        prev_hash=prev_hash,
        clock=clock.now,
    )
    gate = ClockGate(
        sealer,
        clock,
        counters,
        max_held=config.clock.hold_max_records,
        wall=time.time,
        mono=time.monotonic,
    )
    link = MqttLink(config.mqtt, topics, client_id=f"consentgate-{config.hub_id}")
    publisher = Publisher(outbox, link, policy, counters, window=config.mqtt.max_inflight)
    router = Router()
    # the registry before the pipeline, which asks it which devices may report; the
    # transports after it, which hand it their readings
    parts = DeviceParts(
        config=config,
        db=db,
        pseudonyms=pseudonyms,
        policy=policy,
        publisher=publisher,
        outbox=outbox,
        audit=audit,
        counters=counters,
        router=router,
    )
    devices = await open_registry(parts, stack)
    registry = devices.registry
    # the simulated devices' pseudonyms (an erasure takes them out: they report no more)
    simulated = set(device_ids(pseudonyms.device, config.simulator.devices))

    def known_device(device: str) -> bool:
        return device in simulated or registry.is_paired(device)

    pipeline = Pipeline(
        policy=policy,
        sealer=gate,
        outbox=outbox,
        counters=counters,
        field_category=field_category,
        ttl=config.retention.ttl,
        keyed_hash=pseudonyms.keyed_hash,
        known_device=known_device,
        aggregate_window_s=config.consent.aggregate_window_s,
        batch_size=config.outbox.batch_size,
        linger_s=config.outbox.linger_s,
        room=publisher.room,
    )
    # an unpaired (or erased) device's open aggregate windows go at once
    registry.subscribe(
        lambda event: pipeline.forget_aggregates(event.device) if event.kind == UNPAIRED else None
    )
    await open_transports(parts, stack, devices, pipeline.submit)
    purger = Purger(db, outbox, counters, audit)
    changes = Changes(
        db=db, audit=audit, outbox=outbox, publisher=publisher, pipeline=pipeline, purger=purger
    )
    hub = Hub(
        config=config,
        topics=topics,
        db=db,
        counters=counters,
        audit=audit,
        outbox=outbox,
        policy=policy,
        pseudonyms=pseudonyms,
        pipeline=pipeline,
        link=link,
        publisher=publisher,
        router=router,
        sealer=sealer,
        purger=purger,
        changes=changes,
        clock=clock,
        gate=gate,
        registry=registry,
        simulated=simulated,
        known_device=known_device,
    )
    _wire(hub)
    hub.loops.update(devices.loops)
    # the retained devices list follows pairings, and consent (a MAC is shown only with it)
    hub.registry.subscribe(lambda _: hub.publish_devices_soon())
    policy.subscribe(lambda _: hub.publish_devices_soon())
    install_governance(hub)
    return hub


def _wire(hub: Hub) -> None:
    from gateway.commands.hub import register_hub_commands  # noqa: PLC0415 - avoids a cycle
    from gateway.consent.commands import register_consent_commands  # noqa: PLC0415

    register_hub_commands(hub.router, hub)
    register_consent_commands(hub.router, hub, hub.known_device)

    hub.loops.update(open_intake(hub.link, hub.router, hub.topics, hub.counters, hub.config))

    async def on_connect(connection: Any) -> None:
        await connection.publish(hub.topics.consent, _json(hub.policy.snapshot()), retain=True)
        await connection.publish(hub.topics.health, _json(hub.health()), retain=True)
        await connection.publish(
            hub.topics.devices, _json(hub.registry.devices()["paired"]), retain=True
        )

    hub.link.on_connect(on_connect)
    hub.loops["mqtt-link"] = hub.link.run
    hub.loops["outbox-publisher"] = hub.publisher.run
    hub.loops["outbox-purger"] = hub.purger.run
    hub.loops["outbox-commit"] = hub.outbox.run
    hub.loops["held-changes"] = hub.changes.run
    hub.loops["pipeline"] = hub.pipeline.run
    hub.loops["epoch-timer"] = hub.pipeline.tick_forever
    hub.loops["clock"] = functools.partial(hub.clock.run, hub.db)
    hub.loops["health"] = functools.partial(_health_loop, hub)
    _wire_operator(hub)
    if hub.config.simulator.devices:
        from drivers.simulator import Simulator, device_ids  # noqa: PLC0415 - only when configured

        config = hub.config.simulator
        devices = device_ids(hub.pseudonyms.device, config.devices)
        simulator = Simulator(
            devices,
            config.rate_hz,
            hub.pipeline.submit,
            not_built=lambda count: hub.counters.inc("dropped.queue_full", count),
        )
        hub.loops["simulator"] = simulator.run


def _wire_operator(hub: Hub) -> None:
    """Add the opt-in operator features: metrics textfile, Home Assistant, disclosure."""
    from gateway.disclosure.command import register_disclosure  # noqa: PLC0415

    register_disclosure(hub.router, hub)
    if hub.config.metrics.textfile is not None:
        from gateway.metrics.textfile import MetricsWriter  # noqa: PLC0415 - only when configured

        hub.loops["metrics"] = MetricsWriter(hub.config.metrics, hub.config.hub_id, hub.health).run
    if hub.config.homeassistant.enabled:
        from gateway.homeassistant.bridge import announcer  # noqa: PLC0415 - only when configured

        hub.link.on_connect(announcer(hub.config, hub.topics))


def _json(value: Any) -> bytes:
    import json  # noqa: PLC0415

    return json.dumps(value, separators=(",", ":"), default=str).encode()


async def _health_loop(hub: Hub) -> None:
    while True:
        await asyncio.sleep(hub.config.mqtt.health_interval_s)
        connection = hub.link.connection
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.publish(hub.topics.health, _json(hub.health()), retain=True)
            reraise_if_cancelling()


async def _watchdog(hub: Hub, loops: dict[str, asyncio.Task[None]], period: float) -> None:
    from gateway.liveness import Liveness  # noqa: PLC0415 - only under a systemd watchdog

    await Liveness(hub.pipeline, hub.db, loops).run(period)


async def run(
    config: Config,
    stop: asyncio.Event,
    on_ready: Callable[[Hub], None] | None = None,
) -> None:
    """Run the daemon until ``stop`` is set, then shut down gracefully."""
    async with contextlib.AsyncExitStack() as stack:
        hub = await build_hub(config, stack)
        if hub.clock.anchored:  # else the first seal after the anchor starts the epoch
            await hub.pipeline.rotate("start")
        producers = {"simulator"}
        async with asyncio.TaskGroup() as group:
            tasks = {name: group.create_task(loop(), name=name) for name, loop in hub.loops.items()}
            period = watchdog_interval()
            if period:
                watchdog = _watchdog(hub, dict(tasks), period)
                tasks["watchdog"] = group.create_task(watchdog, name="watchdog")
            # Everything alive now (modules, keys, config) lives as long as the daemon: the
            # cyclic collector need not walk it again on every full collection, which would
            # stall the event loop for tens of milliseconds under load. Undone at the stop,
            # so a process that runs hubs one after another (tests, benchmarks) can still
            # collect what each left behind.
            gc.freeze()
            stack.callback(gc.unfreeze)
            notify("READY=1")
            logger.info("daemon ready", extra={"hub_epoch": hub.sealer.epoch})
            if on_ready is not None:
                on_ready(hub)
            await stop.wait()
            notify("STOPPING=1")
            logger.info("stopping")
            for name in producers & tasks.keys():
                tasks[name].cancel()
            await _drain(hub)
            await hub.link.close()
            for task in tasks.values():
                task.cancel()
        logger.info("stopped", extra={"outbox_rows": hub.outbox.rows})


async def _drain(hub: Hub) -> None:
    """Seal queued readings, let the publisher send for up to DRAIN_S seconds, then write
    what is left to disk."""
    await hub.pipeline.flush()
    await hub.pipeline.commit_held(force=True)
    with contextlib.suppress(StorageUnavailableError):  # the floor was saved at the anchor
        await hub.clock.save(hub.db)
    if hub.link.connected.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                # two conditions owned by two components, bounded by DRAIN_S
                while hub.outbox.rows > 0 and hub.link.connected.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    try:
        await hub.outbox.commit()
    except StorageUnavailableError:
        logger.error(  # noqa: TRY400 - the fault was logged once; a traceback is noise
            "records not written at the stop: storage unavailable",
            extra={"records": hub.outbox.staged},
        )
