"""The parameters each command of a hub takes, derived from its handlers, not copied by hand.

``command_params`` calls every registered handler (not through the router's middleware) with a
request object that notes each member name the handler asks for (``in``, ``[]``, ``get``),
and reads the names a refusal gives: ``reject_unknown`` lists what is allowed, ``require``
names what is missing. Each round passes the names learnt so far with a plausible value from
``pools``, so a handler that checks its parameters one after the other shows the next one;
probing stops when a round teaches nothing new. A handler added to the hub is fuzzed with its
own parameters without anyone listing them here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from typing import Any, Final

from gateway.commands.router import Router
from gateway.errors import CommandError

PROBE: Final = "zz_probe"  # a name no command takes: reject_unknown answers with its list
ROUNDS: Final = 6
PROBE_TIMEOUT_S: Final = 2.0
_ALLOWED: Final = re.compile(r"allowed: ([^;]*)$")
_MISSING: Final = re.compile(r"missing parameter '([^']+)'")


class _Recording(dict[str, Any]):
    """A request object that notes every member name a handler asks for."""

    def __init__(self, values: Mapping[str, Any], seen: set[str]) -> None:
        super().__init__(values)
        self.seen = seen

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.seen.add(key)
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self.seen.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the member ``key`` (noted as asked for), or ``default``."""
        self.seen.add(key)
        return super().get(key, default)


async def command_params(
    router: Router, pools: Mapping[str, list[Any]]
) -> dict[str, tuple[str, ...]]:
    """Return, for every command ``router`` has, the parameter names its handler takes."""
    return {command: await _probe(router, command, pools) for command in router.commands}


async def _probe(router: Router, command: str, pools: Mapping[str, list[Any]]) -> tuple[str, ...]:
    handler = router.handler(command)
    names: set[str] = set()
    for attempt in range(ROUNDS):
        seen: set[str] = set()
        values: dict[str, Any] = {n: pools[n][0] if n in pools else None for n in sorted(names)}
        if attempt == 0:
            values[PROBE] = 1
        with contextlib.suppress(Exception):  # a refusal teaches names; anything else nothing
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await handler(_Recording(values, seen))
            except CommandError as exc:
                seen.update(_named(exc.message))
        seen -= {PROBE, "transaction", ""}
        if seen <= names:
            break
        names |= seen
    return tuple(sorted(names))


def _named(message: str) -> set[str]:
    """Return the parameter names a refusal's message lists (allowed ones, a missing one)."""
    names: set[str] = set()
    allowed = _ALLOWED.search(message)
    if allowed is not None:
        names.update(name.strip() for name in allowed.group(1).split(","))
    missing = _MISSING.search(message)
    if missing is not None:
        names.add(missing.group(1))
    return names
