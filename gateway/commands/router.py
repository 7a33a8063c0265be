"""Dispatch of control requests to handlers, with the stable error codes of the MQTT API.

A handler is ``async def handler(params) -> data`` where ``params`` is the request object minus
``transaction``; it raises ``CommandError(code, message)`` to refuse. Parsing, dispatch and the
response shape live here so every command answers the same way.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import CommandError

logger = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]
# ``middleware(command, next_handler, params)``: may check, refuse (CommandError), or act after.
Middleware = Callable[[str, Handler, Mapping[str, Any]], Awaitable[Any]]
RefusalListener = Callable[[str, CommandError], Awaitable[None]]
MAX_REQUEST_BYTES: Final = 64 * 1024
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
    }
)


@dataclass(frozen=True, slots=True)
class Response:
    """A response ready to publish: its command, and the JSON object to send."""

    command: str
    body: dict[str, Any]

    def encode(self) -> bytes:
        """Return the response as compact UTF-8 JSON."""
        return json.dumps(self.body, separators=(",", ":"), default=str).encode()


class Router:
    """Maps command names (``consent/set``) to handlers and turns every outcome into a Response."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._middleware: list[Middleware] = []
        self._refusal_listeners: list[RefusalListener] = []

    def add(self, command: str, handler: Handler) -> None:
        """Register ``handler`` for ``command``; a second registration is a programming error."""
        if command in self._handlers:
            raise ValueError(f"command {command!r} registered twice")
        self._handlers[command] = handler

    def use(self, middleware: Middleware) -> None:
        """Run every handler through ``middleware``; the first one added runs outermost."""
        self._middleware.append(middleware)

    def on_refused(self, listener: RefusalListener) -> None:
        """Await ``listener(command, error)`` for every refused request (its failure is logged)."""
        self._refusal_listeners.append(listener)

    @property
    def commands(self) -> tuple[str, ...]:
        """Return the registered command names, sorted."""
        return tuple(sorted(self._handlers))

    def _handler(self, command: str) -> Handler:
        handler = self._handlers.get(command)
        if handler is None:
            raise CommandError(
                "unknown_command", f"no command {command!r}; known: " + ", ".join(self.commands)
            )
        return handler

    async def dispatch(self, command: str, payload: bytes) -> Response:
        """Run the request ``payload`` for ``command`` and return its response (never raises)."""
        transaction: Any = None
        try:
            params = parse_request(payload)
            transaction = params.pop("transaction", None)
            handler = self._handler(command)
            for middleware in reversed(self._middleware):
                handler = functools.partial(middleware, command, handler)
            data = await handler(params)
        except CommandError as exc:
            logger.info("command refused", extra={"command": command, "code": exc.code})
            await self._refused(command, exc)
            return Response(
                command,
                {
                    "transaction": transaction,
                    "status": "error",
                    "error": {"code": exc.code, "message": exc.message},
                },
            )
        except Exception:  # the supervisor boundary of one command: the daemon keeps running
            logger.exception("command failed", extra={"command": command})
            return Response(
                command,
                {
                    "transaction": transaction,
                    "status": "error",
                    "error": {"code": "internal", "message": "internal error; see the hub log"},
                },
            )
        return Response(command, {"transaction": transaction, "status": "ok", "data": data})

    async def _refused(self, command: str, error: CommandError) -> None:
        for listener in self._refusal_listeners:
            try:
                await listener(command, error)
            except Exception:  # the refusal is answered whatever its listeners do
                logger.exception("refusal listener failed", extra={"command": command})


def parse_request(payload: bytes) -> dict[str, Any]:
    """Decode a request body into a dict; raise CommandError(invalid_json|invalid_request)."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise CommandError("invalid_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
    if not payload.strip():
        return {}
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError("invalid_json", f"request is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CommandError("invalid_request", "request must be a JSON object")
    transaction = value.get("transaction")
    if transaction is not None and not isinstance(transaction, str | int):
        raise CommandError("invalid_request", "transaction must be a string or number")
    return value


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
            f"unknown parameter {extra[0]!r}; allowed: " + ", ".join(sorted(allowed)),
        )
