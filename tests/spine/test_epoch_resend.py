"""A consumer that missed an epoch's announcement asks for it and opens the held records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from gateway.envelope.consumer import Consumer
from gateway.envelope.keys import hub_signing_key, load_recipient_private
from gateway.envelope.session import Session
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


async def test_unknown_epoch_is_resent_on_request_and_held_records_open(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, broker.port, "resend", simulator={"devices": 3, "rate_hz": 20.0})
    root = config.topic_root
    async with running_hub(config) as hub, aiomqtt.Client("127.0.0.1", broker.port) as client:
        session = Session(
            Consumer(
                load_recipient_private(tmp_path / "recipient" / "recipient.key"),
                {config.hub_id: hub_signing_key(config.state_dir).public_key()},
            )
        )
        kids: set[str] = set()
        opened = 0

        async def pump() -> None:
            nonlocal opened
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                outcome = session.handle(str(message.topic), message.payload)
                opened += len(outcome.opened)
                kids.update(r.kid.hex() for r in outcome.requests)

        await client.subscribe(f"{root}/data/#", qos=1)  # records only: no announcement yet
        task = asyncio.create_task(pump())
        try:
            await eventually(lambda: len(session.pending) >= 10, what="records held")
            assert opened == 0
            await hub.router.dispatch("keys/rotate", b"{}")  # the retained one is newer now
            await client.subscribe(f"{root}/epoch", qos=1)
            await asyncio.sleep(0.3)
            held = len(session.pending)
            assert held >= 10  # the retained announcement is of the newer epoch only
            for kid in sorted(kids):
                reply = await hub.router.dispatch("epoch/resend", json.dumps({"kid": kid}).encode())
                assert reply.body["data"] == {"announcements": 1}
            await eventually(
                lambda: len(session.pending) == 0 and opened >= 10,
                what="held records opened after the resend",
            )
            bad = await hub.router.dispatch("epoch/resend", b'{"kid": "zz"}')
            assert bad.body["error"]["code"] == "invalid_request"
        finally:
            task.cancel()
