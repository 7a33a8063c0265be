"""Commands about the hub itself: health, key rotation, epoch re-announcement."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from gateway.audit.log import AuditLog
from gateway.commands.router import Router, reject_unknown
from gateway.envelope.sealer import Sealer
from gateway.errors import CommandError
from gateway.mqtt.link import MqttLink
from gateway.mqtt.topics import Topics
from gateway.outbox.store import Outbox

_KID = re.compile(r"^[0-9a-f]{16}$")
# keys/rotate's answer while the hub's clock is not yet trusted (docs/mqtt-api.md)
DEFERRED_CLOCK = "clock_unsynced"


class Rotating(Protocol):
    """The pipeline's epoch rotation (gateway.pipeline.Pipeline.rotate)."""

    async def rotate(self, reason: str) -> int:
        """Start a new epoch now; return its number."""
        ...


class Deferring(Protocol):
    """Rotations that wait for a trusted clock (gateway.clockgate.ClockGate.defer_rotation)."""

    def defer_rotation(self, reason: str) -> bool:
        """Defer a rotation to the first seal after the anchor (True), or refuse to (False)."""
        ...


class HubHost(Protocol):
    """What the hub commands need of the daemon: its health report, the epoch machinery
    (rotation, announcements) and the connection to re-announce on."""

    @property
    def pipeline(self) -> Rotating:
        """The data path (for rotating the epoch)."""
        ...

    @property
    def gate(self) -> Deferring:
        """The sealer's clock gate (for deferring a rotation until the clock is trusted)."""
        ...

    audit: AuditLog
    link: MqttLink
    sealer: Sealer
    outbox: Outbox
    topics: Topics

    def health(self) -> dict[str, Any]:
        """Return the health report."""
        ...


def register_hub_commands(router: Router, hub: HubHost) -> None:
    """Register ``health``, ``keys/rotate`` and ``epoch/resend`` on ``router``."""

    async def health(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset())
        return hub.health()

    async def rotate(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset())
        if hub.gate.defer_rotation("command"):
            # no announcement may carry an untrusted window: the epoch starts at the anchor
            epoch = hub.sealer.epoch
            await hub.audit.append("keys.rotate", epoch=epoch, deferred=DEFERRED_CLOCK)
            return {"epoch": epoch, "deferred": DEFERRED_CLOCK}
        epoch = await hub.pipeline.rotate("command")
        await hub.audit.append("keys.rotate", epoch=epoch)
        return {"epoch": epoch}

    async def resend(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset({"kid", "epoch"}))
        epoch = params.get("epoch")
        if epoch is not None and (
            isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**63
        ):
            raise CommandError("invalid_request", "epoch must be an integer from 0 to 2**63-1")
        kid = params.get("kid")
        if kid is not None and (not isinstance(kid, str) or not _KID.match(kid)):
            raise CommandError("invalid_request", "kid must be 16 hex digits")
        connection = hub.link.connection
        if connection is None:
            raise CommandError("busy", "not connected to the broker")
        exact = hub.sealer.announcement(bytes.fromhex(kid)) if kid else None
        if exact is not None:
            announcements = [exact]
        else:  # every epoch that may still have records on their way
            oldest = await hub.outbox.oldest_epoch_queued()
            since = (
                epoch if epoch is not None else min(oldest or hub.sealer.epoch, hub.sealer.epoch)
            )
            announcements = [a for _, a in await hub.outbox.announcements(since)]
        # Re-sent without retain: the retained topic keeps the newest announcement.
        for announcement in announcements:
            await connection.publish(hub.topics.epoch, announcement)
        return {"announcements": len(announcements)}

    router.add("health", health)
    router.add("keys/rotate", rotate)
    router.add("epoch/resend", resend)
