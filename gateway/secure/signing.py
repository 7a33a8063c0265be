"""Signed commands: Ed25519 signatures with a persisted, strictly increasing counter per key.

When ``[commands] signing_keys`` is configured, ``consent/set``, ``erase`` and ``export`` must
carry ``signature`` (hex) and ``counter`` (integer). The signature covers

    b"consentgate-command/1\\n" + request topic + b"\\n" + canonical JSON of the request

where the request topic is ``<base>/<hub_id>/request/<command>`` (binding hub and command: an
``export`` cannot be replayed as an ``erase``), and the canonical JSON is the request object
without ``signature`` and ``transaction`` (a label the hub only echoes), keys sorted, no
spaces, non-ASCII as UTF-8 (Python: ``json.dumps(request, sort_keys=True, separators=(",",
":"), ensure_ascii=False)``). ``sign_request`` builds it. A counter is accepted only if it is
greater than every counter accepted before from the same key; it is persisted before the
command runs. Anything else is refused with ``unauthorized`` and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

import aiosqlite
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.commands.router import Handler
from gateway.errors import CommandError
from gateway.storage.db import get_meta, set_meta, transaction

SIGNED_COMMANDS: Final = frozenset({"consent/set", "erase", "export"})
CONTEXT: Final = b"consentgate-command/1\n"
SIGNATURE: Final = "signature"
COUNTER: Final = "counter"
MAX_COUNTER: Final = 2**53 - 1  # exact in every JSON implementation
_UNSIGNED: Final = frozenset({SIGNATURE, "transaction"})


def signed_bytes(topic: str, request: Mapping[str, Any]) -> bytes:
    """Return the bytes a command signature covers for ``request`` sent to ``topic``."""
    body = {k: v for k, v in request.items() if k not in _UNSIGNED}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return CONTEXT + topic.encode() + b"\n" + text.encode()


def sign_request(
    key: Ed25519PrivateKey, topic: str, request: Mapping[str, Any], counter: int
) -> dict[str, Any]:
    """Return ``request`` with ``counter`` and its ``signature`` by ``key`` (client side)."""
    signed = {**request, COUNTER: counter}
    return {**signed, SIGNATURE: key.sign(signed_bytes(topic, signed)).hex()}


class CommandSigning:
    """Router middleware that demands valid signatures on the signed commands."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        keys: Iterable[bytes],
        topic_root: str,
        commands: frozenset[str] = SIGNED_COMMANDS,
    ) -> None:
        self._db = db
        self._keys = [(raw.hex(), Ed25519PublicKey.from_public_bytes(raw)) for raw in keys]
        self._root = topic_root
        self._commands = commands
        self._lock = asyncio.Lock()

    async def __call__(self, command: str, handler: Handler, params: Mapping[str, Any]) -> Any:
        """Check the signature of a signed command, consume its counter, then run it."""
        if command not in self._commands or not self._keys:
            return await handler(params)
        async with self._lock:
            await self._authorise(command, params)
        return await handler({k: v for k, v in params.items() if k not in (SIGNATURE, COUNTER)})

    async def _authorise(self, command: str, params: Mapping[str, Any]) -> None:
        signature, counter = params.get(SIGNATURE), params.get(COUNTER)
        if signature is None or counter is None:
            raise CommandError("unauthorized", f"{command} must be signed (signature, counter)")
        if (
            not isinstance(signature, str)
            or isinstance(counter, bool)
            or not isinstance(counter, int)
            or not 0 < counter <= MAX_COUNTER
        ):
            raise CommandError(
                "unauthorized", "signature must be hex and counter a positive integer"
            )
        try:
            raw = bytes.fromhex(signature)
        except ValueError:
            raw = b""
        message = signed_bytes(f"{self._root}/request/{command}", params)
        signer = next((kid for kid, key in self._keys if _valid(key, raw, message)), None)
        if signer is None:
            raise CommandError("unauthorized", "the signature is not valid for any trusted key")
        meta_key = f"command_counter:{signer}"
        last = int(await get_meta(self._db, meta_key) or b"0")
        if counter <= last:
            raise CommandError(
                "unauthorized", f"counter {counter} was not above the last accepted ({last})"
            )
        async with transaction(self._db):
            await set_meta(self._db, meta_key, str(counter).encode())


def _valid(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
