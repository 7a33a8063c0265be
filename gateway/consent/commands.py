"""``consent/get``, ``consent/set`` and ``try_now``: validated, then made by the one owner of
acknowledged changes (gateway.changes), whose order of steps they do not restate.

The answer carries ``durable``: false only while storage refuses writes (the change holds in
memory and is persisted as soon as storage returns).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import aiosqlite

from gateway.changes import Change, Changes
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
from gateway.consent.policy import ConsentPolicy
from gateway.consent.store import save_policy
from gateway.errors import CommandError

logger = logging.getLogger(__name__)

RANK: Final = {OFF: 0, COARSE: 1, "on": 2}


class ConsentHost(Protocol):
    """What the consent commands need of the daemon: the policy, the owner of acknowledged
    changes, the database the policy is saved in, and the retained consent topic."""

    policy: ConsentPolicy
    changes: Changes
    db: aiosqlite.Connection

    def publish_consent_soon(self) -> None:
        """Queue the current consent state for the retained consent topic."""
        ...


_PSEUDONYM: Final = re.compile(r"^[0-9a-f]{16}$")


def withdrawn_categories(flag: str, old: str, new: str) -> list[str]:
    """Return the categories whose queued records must go when ``flag`` goes ``old`` -> ``new``."""
    if RANK[new] >= RANK[old]:
        return []
    governed = [c.name for c in CATEGORIES.values() if c.flag == flag]
    if new == COARSE:  # raw records go; what is already a coarse form stays allowed
        return [name for name in governed if name not in COARSE_FORMS]
    return governed


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
    router: Router, hub: ConsentHost, known_device: Callable[[str], bool]
) -> None:
    """Register ``consent/get``, ``consent/set`` and ``try_now`` on ``router`` for ``hub``."""

    async def get(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset())
        return hub.policy.snapshot()

    async def set_(params: Mapping[str, Any]) -> Any:
        flag, state, device = parse_set(params, known_device)
        old = hub.policy.flag(flag, device)
        withdrawn = withdrawn_categories(flag, old, state)
        durable = await _make(
            hub,
            "consent.set",
            lambda: hub.policy.set_flag(flag, state, device),
            withdrawn,
            device,
            flag=flag,
            state=state,
            device=device,
            previous=old,
            purging=withdrawn,
        )
        return {"version": hub.policy.version, "purging": withdrawn, "durable": durable}

    async def try_now(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset({"enabled"}))
        enabled = require(params, "enabled", bool)
        personal = [c for c in CATEGORIES if c != DEVICE_BASIC] if enabled else []
        durable = await _make(
            hub,
            "consent.try_now",
            lambda: hub.policy.set_try_now(enabled),
            personal,
            None,
            enabled=enabled,
            purging=personal,
        )
        return {
            "version": hub.policy.version,
            "try_now": enabled,
            "purging": personal,
            "durable": durable,
        }

    router.add("consent/get", get)
    router.add("consent/set", set_)
    router.add("try_now", try_now)


async def _make(
    hub: ConsentHost,
    event: str,
    apply: Callable[[], None],
    withdrawn: list[str],
    scope: str | None,
    /,
    **details: Any,
) -> bool:
    """Make a consent change through the owner; persist the whole policy with it."""
    durable = await hub.changes.make(
        Change(
            event=event,
            apply=apply,
            persist=lambda: save_policy(hub.db, hub.policy),
            withdrawn=withdrawn,
            device=scope,
            details={"version": hub.policy.version + 1, **details},
        )
    )
    logger.info("consent changed", extra={"version": hub.policy.version, "audit_event": event})
    hub.publish_consent_soon()
    return durable
