"""``audit/tail`` and ``audit/verify`` over MQTT: the same views as ``consentgate audit``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.log import AuditLog
from gateway.commands.router import Router, reject_unknown
from gateway.errors import CommandError

DEFAULT_TAIL: Final = 20
MAX_TAIL: Final = 1000


def register_audit_commands(router: Router, audit: AuditLog, hub_key: Ed25519PublicKey) -> None:
    """Register ``audit/tail`` and ``audit/verify`` (checkpoints checked against ``hub_key``)."""

    async def tail(params: Mapping[str, Any]) -> Any:
        """Return the newest ``count`` entries (1-1000, default 20), oldest first."""
        reject_unknown(params, frozenset({"count"}))
        count = params.get("count", DEFAULT_TAIL)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_TAIL:
            raise CommandError(
                "invalid_request", f"parameter 'count' must be an integer in 1-{MAX_TAIL}"
            )
        return {"entries": [entry.to_json() for entry in await audit.tail(count)]}

    async def verify(params: Mapping[str, Any]) -> Any:
        """Return the verification report of the whole log (never raises on tampering)."""
        reject_unknown(params, frozenset())
        return (await audit.report(hub_key)).to_json()

    router.add("audit/tail", tail)
    router.add("audit/verify", verify)
