"""Coverage-guided fuzzing of the request path with atheris (extra ``fuzz``).

``python -m bench.fuzz_requests_atheris [-atheris_runs=N] [libFuzzer options]`` feeds
libFuzzer's inputs to the intake and the router as a client would send them: the first byte
picks the command (known, critical or unknown), the next ones optionally a response topic, the
rest is the body. A crash, a traceback, or an ``internal`` answer is a finding.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any

import atheris

with atheris.instrument_imports():
    from gateway.commands.intake import Intake, Limits
    from gateway.commands.router import Router, reject_unknown, require
    from gateway.counters import Counters
    from gateway.mqtt.link import Request
    from gateway.mqtt.topics import Topics

COMMANDS = ("health", "consent/set", "rename", "nope/x", "erase")
TOPICS = Topics("consentgate/fuzz")


def _router() -> Router:
    router = Router()

    async def health(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset())
        return {}

    async def consent_set(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset({"flag", "state", "device"}))
        return {"flag": require(params, "flag", str), "state": require(params, "state", str)}

    async def rename(params: Mapping[str, Any]) -> Any:
        return {"device": require(params, "device", str), "name": require(params, "name", str)}

    async def erase(params: Mapping[str, Any]) -> Any:
        return {"scope": require(params, "scope", str)}

    for name, handler in (
        ("health", health),
        ("consent/set", consent_set),
        ("rename", rename),
        ("erase", erase),
    ):
        router.add(name, handler)
    return router


LOOP = asyncio.new_event_loop()
ANSWERS: list[dict[str, Any]] = []


def _send(topic: str, payload: bytes, correlation: bytes | None, *, qos: int = 1) -> None:
    ANSWERS.append(json.loads(payload))


INTAKE = Intake(_router(), TOPICS, Counters(), _send, Limits(burst=10**9, rate_per_s=1e9))
WORKER = LOOP.create_task(INTAKE.run())  # noqa: RUF006 - kept for the whole run


def test_one_input(data: bytes) -> None:
    """Offer one fuzzed request, run the lanes until answered; fail on ``internal``."""
    if not data:
        return
    command = COMMANDS[data[0] % len(COMMANDS)]
    reply = None
    if len(data) > 1 and data[1] & 1:
        reply = data[2:10].decode("utf-8", "replace")
        data = data[10:]
    else:
        data = data[1:]
    ANSWERS.clear()

    async def one() -> None:
        INTAKE.offer(Request(command, data, reply, None))
        while not ANSWERS:
            await asyncio.sleep(0)

    LOOP.run_until_complete(one())
    for answer in ANSWERS:
        error = answer.get("error") or {}
        if error.get("code") == "internal":
            raise AssertionError(f"internal error for {command!r}: {data[:80]!r}")


def main() -> None:
    """Run libFuzzer over the request path."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
