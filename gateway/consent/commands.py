"""``consent/get``, ``consent/set`` and ``try_now``: validated, applied at once, audited.

A change that narrows consent (on -> coarse -> off, or Try Now switched on) is acknowledged
only after (1) the flag changed while no pipeline batch was between its gate and the outbox,
(2) nothing handed to paho before the change can still reach the broker (the publisher's
barrier), (3) the queued records of the withdrawn categories are dead: a durable tombstone
that the forwarding gate honours even if consent comes back, and (4) the new state is
persisted and audited. The rows themselves are deleted just after, by the purger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from gateway.commands.router import Router, reject_unknown, require
from gateway.consent.catalogue import (
    CATEGORIES,
    COARSE,
    COARSE_FLAGS,
    COARSE_FORMS,
    DEVICE_BASIC,
    FLAGS,
    OFF,
)
from gateway.consent.store import save_policy
from gateway.errors import CommandError
from gateway.storage.db import transaction

if TYPE_CHECKING:
    from gateway.daemon import Hub

logger = logging.getLogger(__name__)

RANK: Final = {OFF: 0, COARSE: 1, "on": 2}
_PSEUDONYM: Final = re.compile(r"^[0-9a-f]{16}$")


def withdrawn_categories(flag: str, old: str, new: str) -> list[str]:
    """Return the categories whose queued records must go when ``flag`` goes ``old`` -> ``new``."""
    if RANK[new] >= RANK[old]:
        return []
    governed = [c.name for c in CATEGORIES.values() if c.flag == flag]
    if new == COARSE:  # raw records go; what is already a coarse form stays allowed
        return [name for name in governed if name not in COARSE_FORMS]
    return governed


async def apply_change(
    hub: Hub,
    change: Callable[[], None],
    withdrawn: list[str],
    device: str | None,
    event: str,
    /,
    **details: Any,
) -> None:
    """Apply ``change`` to the policy and return once it holds (the module's steps 1-4).

    ``withdrawn`` names the categories whose queued records die with the change (of
    ``device`` only, if given); ``event`` and ``details`` go to the audit log.
    """
    # The publisher is held back from the start: it sends nothing more meanwhile, and the
    # few statements below do not wait behind its batches.
    async with hub.publisher.paused():
        async with hub.pipeline.exclusive():
            change()
            if withdrawn:  # readings summed under the old consent are not sent either
                hub.pipeline.forget_aggregates(device)
        if withdrawn:
            await hub.publisher.barrier()
        # tombstones, new state and audit entry: one commit
        async with transaction(hub.db):
            stones = [await hub.outbox.tombstone(category, device) for category in withdrawn]
            await save_policy(hub.db, hub.policy)
            await hub.audit.append(event, version=hub.policy.version, **details)
    logger.info("consent changed", extra={"version": hub.policy.version, "audit_event": event})
    hub.publish_consent_soon()
    # The purger's large deletes hold the write lock: only after the new state is durable.
    for stone in stones:
        hub.purger.submit(stone)


def parse_set(
    params: Mapping[str, Any], known_device: Callable[[str], bool]
) -> tuple[str, str, str | None]:
    """Validate a ``consent/set`` request; return (flag, state, device) or raise CommandError."""
    reject_unknown(params, frozenset({"flag", "state", "device"}))
    flag = require(params, "flag", str)
    state = require(params, "state", str)
    device = params.get("device")
    if flag not in FLAGS:
        raise CommandError("unknown_flag", f"no flag {flag!r}; flags: " + ", ".join(FLAGS))
    if state not in RANK:
        raise CommandError("invalid_request", "state must be on, off or coarse")
    if state == COARSE and flag not in COARSE_FLAGS:
        raise CommandError(
            "invalid_request",
            f"flag {flag!r} has no coarse form; coarse applies to: "
            + ", ".join(sorted(COARSE_FLAGS)),
        )
    if device is not None and (
        not isinstance(device, str) or not _PSEUDONYM.match(device) or not known_device(device)
    ):
        raise CommandError("not_found", "no such device; use an id from `devices`")
    return flag, state, device


def register_consent_commands(
    router: Router, hub: Hub, known_device: Callable[[str], bool]
) -> None:
    """Register ``consent/get``, ``consent/set`` and ``try_now`` on ``router`` for ``hub``."""

    async def get(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset())
        return hub.policy.snapshot()

    async def set_(params: Mapping[str, Any]) -> Any:
        flag, state, device = parse_set(params, known_device)
        old = hub.policy.flag(flag, device)
        withdrawn = withdrawn_categories(flag, old, state)
        await apply_change(
            hub,
            lambda: hub.policy.set_flag(flag, state, device),
            withdrawn,
            device,
            "consent.set",
            flag=flag,
            state=state,
            device=device,
            previous=old,
            purging=withdrawn,
        )
        return {"version": hub.policy.version, "purging": withdrawn}

    async def try_now(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset({"enabled"}))
        enabled = require(params, "enabled", bool)
        personal = [c for c in CATEGORIES if c != DEVICE_BASIC] if enabled else []
        await apply_change(
            hub,
            lambda: hub.policy.set_try_now(enabled),
            personal,
            None,
            "consent.try_now",
            enabled=enabled,
            purging=personal,
        )
        return {"version": hub.policy.version, "try_now": enabled, "purging": personal}

    router.add("consent/get", get)
    router.add("consent/set", set_)
    router.add("try_now", try_now)
