"""The device commands through the real Router: shapes, codes, and that refusals change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.commands.router import Router
from gateway.devices import DeviceRegistry, register_commands
from gateway.errors import DeviceError

from .helpers import FakePairer, sighting

UNKNOWN = "0123456789abcdef"


@pytest.fixture
def router(registry: DeviceRegistry) -> Router:
    """A router with the device commands."""
    router = Router()
    register_commands(router, registry)
    return router


async def call(router: Router, command: str, body: Any) -> dict[str, Any]:
    """Dispatch ``body`` (JSON-encoded unless bytes) and return the response object."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await router.dispatch(command, payload)
    result: dict[str, Any] = response.body
    return result


def test_every_device_command_is_registered(router: Router) -> None:
    assert set(router.commands) == {"permit_join", "pair", "unpair", "devices", "device", "rename"}


@pytest.mark.parametrize(
    ("command", "body"),
    [
        ("permit_join", {}),
        ("permit_join", {"duration": "60"}),
        ("permit_join", {"duration": True}),
        ("permit_join", {"duration": -1}),
        ("permit_join", {"duration": 3601}),
        ("permit_join", {"duration": None}),
        ("permit_join", {"duration": [60]}),
        ("permit_join", {"duration": 60, "transport": "zigbee"}),
        ("permit_join", {"duration": 60, "transport": 1}),
        ("permit_join", {"duration": 60, "extra": 1}),
        ("pair", {}),
        ("pair", {"device": 42}),
        ("pair", {"device": "0123456789ABCDEF"}),
        ("pair", {"device": "0123"}),
        ("pair", {"device": ["0123456789abcdef"]}),
        ("unpair", {"device": None}),
        ("device", {"device": "../../etc/passwd"}),
        ("devices", {"all": True}),
        ("rename", {"device": UNKNOWN}),
        ("rename", {"device": UNKNOWN, "name": ""}),
        ("rename", {"device": UNKNOWN, "name": "   "}),
        ("rename", {"device": UNKNOWN, "name": "x" * 65}),
        ("rename", {"device": UNKNOWN, "name": "bad\u0000name"}),
        ("rename", {"device": UNKNOWN, "name": 7}),
        ("pair", [UNKNOWN]),
        ("pair", "0123456789abcdef"),
    ],
)
async def test_bad_shapes_are_invalid_requests(router: Router, command: str, body: Any) -> None:
    response = await call(router, command, body)
    assert response["status"] == "error"
    assert response["error"]["code"] == "invalid_request", response


@pytest.mark.parametrize("payload", [b"NaN", b'{"duration": NaN}', b'{"duration": Infinity}'])
async def test_non_finite_durations_are_refused(router: Router, payload: bytes) -> None:
    response = await call(router, "permit_join", payload)
    assert response["error"]["code"] in {"invalid_request", "invalid_json"}


async def test_garbage_is_invalid_json(router: Router) -> None:
    response = await call(router, "pair", b"{not json")
    assert response["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("command", "body"),
    [
        ("pair", {"device": UNKNOWN}),
        ("unpair", {"device": UNKNOWN}),
        ("device", {"device": UNKNOWN}),
        ("rename", {"device": UNKNOWN, "name": "Lamp"}),
    ],
)
async def test_unknown_devices_are_not_found(router: Router, command: str, body: Any) -> None:
    response = await call(router, command, {"transaction": "t1", **body})
    assert response == {
        "transaction": "t1",
        "status": "error",
        "error": {"code": "not_found", "message": response["error"]["message"]},
    }


async def test_refusals_change_nothing(router: Router, registry: DeviceRegistry) -> None:
    device = registry.seen(sighting())
    before = registry.devices()
    await call(router, "rename", {"device": device, "name": ""})
    await call(router, "permit_join", {"duration": -5})
    await call(router, "unpair", {"device": device})  # a candidate: not paired
    assert registry.devices() == before
    assert not registry.joining("mdns")


async def test_the_command_flow(router: Router, registry: DeviceRegistry) -> None:
    device = registry.seen(sighting())
    listing = await call(router, "devices", {"transaction": 5})
    assert listing["transaction"] == 5
    assert [d["id"] for d in listing["data"]["candidates"]] == [device]
    joined = await call(router, "permit_join", {"duration": 0})
    assert joined["status"] == "ok"
    assert joined["data"]["transport"] is None
    paired = await call(router, "pair", {"device": device})
    assert paired["status"] == "ok"
    assert paired["data"]["paired"] is True
    assert "mac" not in paired["data"]
    renamed = await call(router, "rename", {"device": device, "name": "  Hall light "})
    assert renamed["data"]["name"] == "Hall light"
    one = await call(router, "device", {"device": device})
    assert one["data"]["name"] == "Hall light"
    assert (await call(router, "unpair", {"device": device}))["data"] == {
        "device": device,
        "erased": True,
    }
    assert (await call(router, "devices", b""))["data"] == {"paired": [], "candidates": []}


async def test_permit_join_for_one_transport(router: Router, registry: DeviceRegistry) -> None:
    response = await call(router, "permit_join", {"duration": 30, "transport": "ble"})
    assert response["status"] == "ok"
    assert registry.joining("ble")
    assert not registry.joining("mdns")


async def test_a_device_that_does_not_answer_pairing_is_busy(
    router: Router, registry: DeviceRegistry, pairer: FakePairer
) -> None:
    pairer.error = DeviceError("timeout", "no answer")
    device = registry.seen(sighting())
    response = await call(router, "pair", {"device": device})
    assert response["error"]["code"] == "busy"
    assert "timeout" in response["error"]["message"]


@pytest.mark.parametrize(
    ("reason", "code", "words"),
    [
        ("pairing_busy", "busy", "try again in a minute"),
        ("too_many_attempts", "invalid_request", "reset it"),
        ("bad_shape", "invalid_request", "not supported"),
        ("not_pairable", "invalid_request", "another controller"),
    ],
)
async def test_a_refused_pairing_says_what_the_user_can_do(
    router: Router,
    registry: DeviceRegistry,
    pairer: FakePairer,
    reason: str,
    code: str,
    words: str,
) -> None:
    pairer.error = DeviceError(reason, "refused")
    device = registry.seen(sighting())
    response = await call(router, "pair", {"device": device})
    assert response["error"]["code"] == code
    assert words in response["error"]["message"]
