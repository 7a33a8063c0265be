"""Wires accountability into a built hub: audit checkpoints and commands, the rights
commands, retention sweeps, optional signed commands, and audit entries for pairing,
renaming and refused commands (in aggregate: gateway.commands.refusals).

Called once from ``daemon.build_hub`` once the hub is built; it only registers commands,
router middleware, hooks and loops (nothing runs until the daemon starts them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from gateway.audit.archive import Archiver
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.commands import register_audit_commands
from gateway.commands.refusals import RefusalAudit
from gateway.commands.router import Handler, Middleware
from gateway.devices import model as kinds
from gateway.envelope.keys import hub_signing_key
from gateway.retention import RetentionSweeper
from gateway.rights.commands import RightsHost, register_rights_commands
from gateway.secure.signing import CommandSigning
from gateway.storage.db import until_stored

if TYPE_CHECKING:
    from gateway.commands.router import Router
    from gateway.counters import Counters
    from gateway.devices.model import DeviceEvent
    from gateway.tasks import Loop

logger = logging.getLogger(__name__)

_AuditItem = tuple[str, dict[str, Any]]


class GovernanceHost(RightsHost, Protocol):
    """What accountability needs of the daemon beyond the rights commands: the router to
    register commands and middleware on, the counters, and the loops to add its own to."""

    router: Router
    counters: Counters
    loops: dict[str, Loop]


def install_governance(hub: GovernanceHost) -> None:
    """Register the audit, rights and retention features on ``hub`` (see the module doc)."""
    config = hub.config
    key = hub_signing_key(config.state_dir)
    register_audit_commands(hub.router, hub.audit, key.public_key())
    register_rights_commands(hub.router, hub)
    if config.commands.signing_keys:
        hub.router.use(CommandSigning(hub.db, config.commands.signing_keys, config.topic_root))
    hub.router.use(_audit_renames(hub))
    refusals = RefusalAudit(
        hub.audit, hub.counters, _client_pseudonym(hub), db=hub.db, quiet=hub.router.quiet
    )
    hub.router.on_refused(refusals.on_refused)
    hub.loops["audit-refusals"] = refusals.run
    checkpointer = Checkpointer(
        hub.audit,
        key,
        every=config.audit.checkpoint_every,
        interval_s=config.audit.checkpoint_interval_s,
    )
    hub.loops["audit-checkpoints"] = checkpointer.run
    archiver = Archiver(
        hub.audit,
        hub.db,
        config.audit.archive_dir or config.state_dir / "audit-archive",
        config.hub_id,
        max_entries=config.audit.max_entries,
        interval_s=config.audit.checkpoint_interval_s,
    )
    hub.loops["audit-archive"] = archiver.run
    sweeper = RetentionSweeper(
        hub.outbox, hub.counters, hub.audit, config.retention.sweep_interval_s
    )
    hub.link.on_connect(sweeper.on_connect)
    hub.loops["retention"] = sweeper.run
    queue: asyncio.Queue[_AuditItem] = asyncio.Queue()

    def on_event(event: DeviceEvent) -> None:
        """Queue an audit entry for every pairing (by command or in a join window)."""
        if event.kind == kinds.PAIRED:
            queue.put_nowait(
                ("device.paired", {"device": event.device, "transport": event.transport})
            )

    hub.registry.subscribe(on_event)
    hub.loops["audit-device-events"] = lambda: _append_forever(hub, queue)


async def _append_forever(hub: GovernanceHost, queue: asyncio.Queue[_AuditItem]) -> None:
    while True:
        event, details = await queue.get()
        await until_stored(lambda: hub.audit.append(event, **details))  # noqa: B023


def _audit_renames(hub: GovernanceHost) -> Middleware:
    async def middleware(command: str, handler: Handler, params: Mapping[str, Any]) -> Any:
        """Run the command; audit a successful ``rename`` (the device, not the name)."""
        result = await handler(params)
        if command == "rename":  # a correction of personal data: audited without the name
            await hub.audit.append("device.renamed", device=params.get("device"))
        return result

    return middleware


def _client_pseudonym(hub: GovernanceHost) -> Callable[[str], str]:
    def pseudonym(client: str) -> str:
        """Return the keyed-hash pseudonym of a requester's response topic."""
        raw = client.encode("utf-8", "surrogatepass")
        return hub.pseudonyms.keyed_hash(b"client:" + raw).hex()

    return pseudonym
