"""Stateful property: nothing reaches the broker whose category was off when it was published.

Hypothesis interleaves readings, consent changes, broker kill -9 outages and hub restarts
against a real Mosquitto and a real hub. One observer subscribes to the hub's records and to the
responses of its own requests on one connection, so it sees them in broker order. Its model of
what may arrive: a grant counts from the moment the request is sent, a withdrawal from the
moment its acknowledgement arrives; any record outside that is a violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import aiomqtt
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.consent.catalogue import DEFAULT_FLAGS, OFF
from gateway.daemon import Hub
from gateway.model import Reading, Value
from tests.support.hub import hub_config, make_sink, running_hub
from tests.support.mosquitto import Mosquitto

FLAG_CATEGORIES = {
    "health": ("health",),
    "telemetry": ("telemetry.environment",),
    "location": ("location.precise", "location.coarse"),
}
KIND_FIELDS: dict[str, dict[str, Value]] = {
    "health": {"heart_rate": 70},
    "telemetry": {"temperature": 20.5},
    "location": {"latitude": 48.85, "longitude": 2.35},
}


class ConsentMachine(RuleBasedStateMachine):
    """A hub under random consent changes, outages and restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory(prefix="cg-stateful-")
        workdir = Path(self.tmp.name)
        self.broker = Mosquitto(workdir / "broker", "allow_anonymous true").start()
        self.config = hub_config(workdir, self.broker.port, "stateful", outbox={"batch_size": 20})
        self.sink = make_sink(self.config, self.broker.port, workdir)
        self.allowed = {flag: DEFAULT_FLAGS[flag] != OFF for flag in FLAG_CATEGORIES}
        self.violations: list[str] = []
        self.responses: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.pending_off: dict[str, str] = {}  # transaction -> flag withdrawn, until acked
        self.broker_up = True
        self.observing = asyncio.Event()
        self.hub_cm: Any = None
        self.hub: Hub | None = None
        self.observer: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None
        self.run(self._start_hub())
        self.run(self._start_observer())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start_hub(self) -> None:
        self.hub_cm = running_hub(self.config)
        self.hub = await self.hub_cm.__aenter__()

    async def _stop_hub(self) -> None:
        await self.hub_cm.__aexit__(None, None, None)
        self.hub = None

    async def _start_observer(self) -> None:
        ready = asyncio.Event()
        self.observer = asyncio.create_task(self._observe(ready))
        async with asyncio.timeout(10):
            await ready.wait()

    async def _observe(self, ready: asyncio.Event) -> None:
        root = self.config.topic_root
        while True:
            self.client = aiomqtt.Client(
                "127.0.0.1", self.broker.port, clean_session=False, identifier="stateful-observer"
            )
            try:
                async with self.client:
                    for suffix in ("epoch", "data/#", "response/#"):
                        await self.client.subscribe(f"{root}/{suffix}", qos=1)
                    ready.set()
                    self.observing.set()
                    async for message in self.client.messages:
                        assert isinstance(message.payload, bytes)
                        self._seen(str(message.topic), message.payload)
            except aiomqtt.MqttError:
                self.observing.clear()
                self.client = None
                await asyncio.sleep(0.05)

    def _seen(self, topic: str, payload: bytes) -> None:
        if "/response/" in topic:
            body = json.loads(payload)
            self.responses[str(body.get("transaction"))] = body
            pending = self.pending_off.pop(str(body.get("transaction")), None)
            if pending is not None:
                self.allowed[pending] = False
            return
        before = len(self.sink.opened)
        self.sink.handle(topic, payload)
        for record in self.sink.opened[before:]:
            flag = next(f for f, cats in FLAG_CATEGORIES.items() if record.category in cats)
            if not self.allowed[flag]:
                self.violations.append(f"{record.category} seq {record.seq} after withdrawal")

    @rule(kind=st.sampled_from(sorted(KIND_FIELDS)), count=st.integers(1, 40))
    def readings(self, kind: str, count: int) -> None:
        assert self.hub is not None
        devices = sorted(self.hub.simulated) or [self.hub.pseudonyms.device("stateful")]
        for i in range(count):
            self.hub.pipeline.submit(
                Reading(devices[i % len(devices)], "simulator", self.loop.time(), KIND_FIELDS[kind])
            )
        self.run(asyncio.sleep(0.05))

    @rule(flag=st.sampled_from(sorted(FLAG_CATEGORIES)), on=st.booleans())
    def set_flag(self, flag: str, on: bool) -> None:
        self.run(self._both_connected())
        assert self.client is not None
        self.requests += 1
        transaction = f"s{self.requests}"
        if on:
            self.allowed[flag] = True  # a grant may show up before its acknowledgement
        else:
            self.pending_off[transaction] = flag
        body = json.dumps(
            {"transaction": transaction, "flag": flag, "state": "on" if on else "off"}
        )
        self.run(self.client.publish(f"{self.config.topic_root}/request/consent/set", body, qos=1))
        self.run(self._await_response(transaction))

    async def _both_connected(self) -> None:
        # A request published while the hub is reconnecting has no subscriber and is lost,
        # as for any MQTT client; an operator's tool waits the same way.
        assert self.hub is not None
        async with asyncio.timeout(15):
            await self.hub.link.connected.wait()
            await self.observing.wait()

    async def _await_response(self, transaction: str) -> None:
        async with asyncio.timeout(10):
            while transaction not in self.responses:
                await asyncio.sleep(0.01)
        assert self.responses[transaction]["status"] == "ok"

    @rule()
    def broker_outage(self) -> None:
        self.broker.kill9()
        self.broker_up = False
        self.run(asyncio.sleep(0.3))
        self.broker.start()
        self.broker_up = True
        self.run(asyncio.sleep(0.3))

    @rule()
    def restart_hub(self) -> None:
        self.run(self._stop_hub())
        self.run(self._start_hub())

    @invariant()
    def nothing_published_while_off(self) -> None:
        assert self.violations == []

    def teardown(self) -> None:
        try:
            self.run(asyncio.sleep(0.5))
            if self.hub is not None:
                self.run(self._stop_hub())
            if self.observer is not None:
                self.observer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    self.run(self.observer)
            assert self.violations == []
            assert not self.sink.errors
        finally:
            self.broker.stop()
            self.loop.close()
            self.tmp.cleanup()


ConsentMachine.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConsentInvariant = ConsentMachine.TestCase
