"""Control requests: every malformed request gets an error with a stable code, nothing changes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from gateway.commands.router import ERROR_CODES, Router, require
from gateway.errors import CommandError


def make_router(calls: list[Mapping[str, Any]]) -> Router:
    router = Router()

    async def echo(params: Mapping[str, Any]) -> Any:
        calls.append(params)
        return {"n": require(params, "n", int)}

    async def broken(params: Mapping[str, Any]) -> Any:
        raise RuntimeError("boom")

    router.add("echo", echo)
    router.add("broken", broken)
    return router


async def test_ok_response_echoes_transaction() -> None:
    calls: list[Mapping[str, Any]] = []
    response = await make_router(calls).dispatch("echo", b'{"transaction": "t1", "n": 3}')
    assert response.body == {"transaction": "t1", "status": "ok", "data": {"n": 3}}
    assert json.loads(response.encode())["data"] == {"n": 3}


@pytest.mark.parametrize(
    ("command", "payload", "code"),
    [
        ("echo", b"{not json", "invalid_json"),
        ("echo", b"\xff\xfe", "invalid_json"),
        ("echo", b"[1, 2]", "invalid_request"),
        ("echo", b'{"transaction": "t"}', "invalid_request"),
        ("echo", b'{"n": "three"}', "invalid_request"),
        ("echo", b'{"n": true}', "invalid_request"),
        ("echo", b'{"transaction": {"a": 1}, "n": 1}', "invalid_request"),
        ("echo", b"x" * 70_000, "invalid_request"),
        ("nope", b"{}", "unknown_command"),
        ("broken", b"{}", "internal"),
    ],
)
async def test_bad_requests_get_stable_codes(command: str, payload: bytes, code: str) -> None:
    response = await make_router([]).dispatch(command, payload)
    assert response.body["status"] == "error"
    assert response.body["error"]["code"] == code
    assert code in ERROR_CODES


def test_command_error_carries_code() -> None:
    error = CommandError("not_found", "no such device")
    assert (error.code, error.message) == ("not_found", "no such device")
