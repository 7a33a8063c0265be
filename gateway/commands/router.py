"""Dispatch of control requests to handlers, with the stable error codes of the MQTT API.

A handler is ``async def handler(params) -> data`` where ``params`` is the request object minus
``transaction``; it raises ``CommandError(code, message)`` to refuse. Parsing, dispatch and the
response shape live here so every command answers the same way.

Parsing is defensive (docs/control-plane.md): the size is checked before anything is decoded,
nesting deeper than ``MAX_DEPTH``, NaN/Infinity, lone surrogates and oversized numbers are
``invalid_request``/``invalid_json``, never ``internal``, and no client input ever puts a
traceback in the log. A request refused before it could be decoded still has its transaction
echoed when :func:`recover_transaction` can read it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import CommandError

logger = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]
# ``middleware(command, next_handler, params)``: may check, refuse (CommandError), or act after.
Middleware = Callable[[str, Handler, Mapping[str, Any]], Awaitable[Any]]
MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 16  # the deepest request of the API is 3 levels; JSON bombs go far deeper
TRANSACTION_SCAN_BYTES: Final = 4096
MAX_TRANSACTION_CHARS: Final = 128
ERROR_CODES: Final = frozenset(
    {
        "invalid_json",
        "invalid_request",
        "unknown_command",
        "unknown_flag",
        "not_found",
        "unauthorized",
        "busy",
        "internal",
        "storage_unavailable",
    }
)
# The first ``"transaction": <string or integer>`` member of a request's first bytes: how an
# oversized, too deep or undecodable request still gets its transaction echoed.
_TRANSACTION: Final = re.compile(
    rb'"transaction"\s*:\s*("(?:[^"\\\x00-\x1f]|\\.){0,%d}"|-?[0-9]{1,18}(?![0-9.eE]))'
    % MAX_TRANSACTION_CHARS
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request as its listeners see it: ``command`` is None when it is unknown."""

    command: str | None
    error: CommandError
    client: str | None
    count: int = 1  # refusals of the same kind reported at once (the intake coalesces them)


RefusalListener = Callable[[Refusal], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Response:
    """A response ready to publish: its command, and the JSON object to send."""

    command: str
    body: dict[str, Any]

    def encode(self) -> bytes:
        """Return the response as compact UTF-8 JSON (ASCII escapes: lone surrogates survive)."""
        return json.dumps(self.body, separators=(",", ":"), default=str).encode()


def error_response(command: str, transaction: Any, error: CommandError) -> Response:
    """Return the error response of ``command`` for ``error``, echoing ``transaction``."""
    return Response(
        command,
        {
            "transaction": transaction,
            "status": "error",
            "error": {"code": error.code, "message": error.message},
        },
    )


class Router:
    """Maps command names (``consent/set``) to handlers and turns every outcome into a Response."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._middleware: list[Middleware] = []
        self._refusal_listeners: list[RefusalListener] = []
        # set while no privacy-critical request waits or runs (the request intake keeps it):
        # work that can wait, such as the refusal audit's writes, waits for it
        self.quiet = asyncio.Event()
        self.quiet.set()

    def add(self, command: str, handler: Handler) -> None:
        """Register ``handler`` for ``command``; a second registration is a programming error."""
        if command in self._handlers:
            raise ValueError(f"command {command!r} registered twice")
        self._handlers[command] = handler

    def use(self, middleware: Middleware) -> None:
        """Run every handler through ``middleware``; the first one added runs outermost."""
        self._middleware.append(middleware)

    def on_refused(self, listener: RefusalListener) -> None:
        """Await ``listener(refusal)`` for every refused request (its failure is logged)."""
        self._refusal_listeners.append(listener)

    @property
    def commands(self) -> tuple[str, ...]:
        """Return the registered command names, sorted."""
        return tuple(sorted(self._handlers))

    def knows(self, command: str) -> bool:
        """Return whether ``command`` has a handler."""
        return command in self._handlers

    def handler(self, command: str) -> Handler:
        """Return the handler registered for ``command`` (KeyError if none), without the
        middleware: for tools that probe the handlers (bench.fuzz.params)."""
        return self._handlers[command]

    def _handler(self, command: str) -> Handler:
        handler = self._handlers.get(command)
        if handler is None:
            # the name is the client's: echoed in its own answer, never logged
            raise CommandError(
                "unknown_command", "no such command; known: " + ", ".join(self.commands)
            )
        return handler

    async def dispatch(self, command: str, payload: bytes, client: str | None = None) -> Response:
        """Run the request ``payload`` for ``command`` and return its response (never raises).

        ``client`` names the requester for the refusal listeners (its response topic).
        """
        transaction: Any = None
        try:
            try:
                params = parse_request(payload)
            except CommandError:
                transaction = recover_transaction(payload)
                raise
            transaction = params.pop("transaction", None)
            handler = self._handler(command)
            for middleware in reversed(self._middleware):
                handler = functools.partial(middleware, command, handler)
            data = await handler(params)
        except CommandError as exc:
            await self.refused(command, exc, client)
            return error_response(command, transaction, exc)
        except Exception:  # the supervisor boundary of one command: the daemon keeps running
            # a handler's own fault (not the client's input): the traceback is for the operator
            logger.exception("command failed", extra={"command": command})
            error = CommandError("internal", "internal error; see the hub log")
            return error_response(command, transaction, error)
        return Response(command, {"transaction": transaction, "status": "ok", "data": data})

    async def refused(
        self, command: str, error: CommandError, client: str | None, count: int = 1
    ) -> None:
        """Log (known names only) and tell every refusal listener that ``count`` requests of
        ``command`` from ``client`` were refused with ``error``."""
        known = command if command in self._handlers else None
        # debug only: a flood of bad requests must not become a flood of log lines (refusals
        # are counted on health and audited in aggregate by the listeners)
        logger.debug("command refused", extra={"command": known or "<unknown>", "code": error.code})
        refusal = Refusal(known, error, client, count)
        for listener in self._refusal_listeners:
            try:
                await listener(refusal)
            except Exception:  # the refusal is answered whatever its listeners do
                logger.exception("refusal listener failed", extra={"command": known})


def parse_request(payload: bytes) -> dict[str, Any]:
    """Decode a request body into a dict; raise CommandError(invalid_json|invalid_request)."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise CommandError("invalid_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
    if not payload.strip():
        return {}
    try:
        value = json.loads(payload, parse_constant=_no_constant)
    except RecursionError as exc:  # the C decoder's own depth guard, far past MAX_DEPTH
        raise CommandError("invalid_request", f"nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, 4,300+ digit ints
        raise CommandError("invalid_json", f"request is not valid JSON: {_short(exc)}") from exc
    if not isinstance(value, dict):
        raise CommandError("invalid_request", "request must be a JSON object")
    check_shape(value)
    transaction = value.get("transaction")
    if transaction is not None and not isinstance(transaction, str | int):
        raise CommandError("invalid_request", "transaction must be a string or number")
    return value


def check_shape(value: object) -> None:
    """Raise CommandError(invalid_request) if ``value`` nests past MAX_DEPTH or holds a string
    that is not valid Unicode (a lone surrogate, which SQLite and the log cannot store)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise CommandError("invalid_request", f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, member in item.items():
                    _check_text(key)
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def recover_transaction(payload: bytes) -> str | int | None:
    """Return the transaction of a request that could not be decoded, if its first
    TRANSACTION_SCAN_BYTES hold a ``"transaction"`` member (a string or an integer)."""
    match = _TRANSACTION.search(payload, 0, TRANSACTION_SCAN_BYTES)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    if isinstance(value, str):
        try:
            _check_text(value)
        except CommandError:
            return None
    return value if isinstance(value, str | int) else None


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise CommandError("invalid_request", "string with a lone surrogate") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _short(exc: Exception) -> str:
    return str(exc)[:120]


def require(params: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``params[name]`` if present and of ``kind``, else raise CommandError."""
    if name not in params:
        raise CommandError("invalid_request", f"missing parameter {name!r}")
    value = params[name]
    if isinstance(value, bool) and kind in (int, float):
        raise CommandError("invalid_request", f"parameter {name!r} must be a number")
    if not isinstance(value, kind):
        raise CommandError("invalid_request", f"parameter {name!r} has the wrong type")
    return value


def reject_unknown(params: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Raise CommandError(invalid_request) if ``params`` holds a key outside ``allowed``."""
    extra = sorted(set(params) - allowed)
    if extra:
        raise CommandError(
            "invalid_request",
            f"unknown parameter {extra[0][:64]!r}; allowed: " + ", ".join(sorted(allowed)),
        )
